#!/usr/bin/env bash
# `make bench`: builds the Rust floor, then bench/bench.py measures everything
# side by side in one run and rewrites bench/README.md's figures.
set -euo pipefail
source "$(dirname "$0")/config.sh"
cargo build --release --bin ambient_bench_floor >/dev/null
export PGBIN
python3 "$ROOT/bench/bench.py" "$@"
