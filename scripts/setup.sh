#!/usr/bin/env bash
# Installs what building and testing need, on a bare Debian machine, as root.
# Safe to run again: each step checks first.
set -euo pipefail
source "$(dirname "$0")/config.sh"

# chromium: the report's browser tests (driven by playwright, which must
# not download a browser of its own).
packages=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-cron
          libclang-dev clang sudo chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  echo "setup: installing cargo-pgrx $PGRX_VERSION (takes several minutes)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi
if ! grep -q "pg$PG_MAJOR = \"$PG_CONFIG\"" "$HOME/.pgrx/config.toml" 2>/dev/null; then
  cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi

# Python clients for the integration tests and the benchmark.
if ! python3 -c "import psycopg, sklearn, pytest, pandas, playwright, PIL" 2>/dev/null; then
  echo "setup: installing Python test requirements"
  python3 -m pip install -q --disable-pip-version-check -r "$ROOT/tests/integration/requirements.txt"
fi
