# pg_ambient. `make demo` runs a real demo end to end; `make test` runs every
# test (CI calls exactly this). Both install what is missing first.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CONFIG := source scripts/config.sh
# pgrx-started servers must not see it: see scripts/cluster.sh.
unexport RUST_BACKTRACE RUST_LIB_BACKTRACE

.PHONY: setup install cluster stop demo report test lint unit regress isolation integration upgrade bench bench-accuracy clean-cluster

setup:
	scripts/setup.sh

install: setup
	$(CONFIG); cargo pgrx install --release --pg-config "$$PG_CONFIG" >/dev/null

cluster: install
	scripts/cluster.sh start

stop:
	scripts/cluster.sh stop

demo: cluster
	scripts/demo.sh

# The HTML report of the demo database (REPORT_DB=name for another) in
# target/report/: index.html, the overview, and a page per project.
report: cluster
	$(CONFIG); python3 scripts/report.py "$${REPORT_DB:-ambient_demo}" target/report

lint: setup
	cargo fmt --check
	cargo clippy --all-targets --features pg_test -- -D warnings

# Plain #[test]s (src/ml) and #[pg_test]s, in a throwaway cluster pgrx starts.
unit: setup
	$(CONFIG); rm -rf target/pgrx-test-data; mkdir -p target/pgrx-test-data; \
	  chown postgres: target/pgrx-test-data; allow_postgres_to_reach "$$ROOT/target/pgrx-test-data"; \
	  cargo pgrx test pg$$PG_MAJOR --runas postgres --pgdata "$$ROOT/target/pgrx-test-data"

regress: cluster
	scripts/regress.sh

# Concurrency specs: two sessions training, deploying, rolling back and
# dropping at once, under READ COMMITTED and REPEATABLE READ.
isolation: cluster
	scripts/isolation.sh

integration: cluster
	$(CONFIG); python3 -m pytest -q tests/integration

# Builds each release in sql/releases.toml from its commit, trains on it,
# then installs this version and checks ALTER EXTENSION UPDATE. Last, as it
# swaps the installed library (and puts this one back).
upgrade: cluster
	$(CONFIG); python3 -m pytest -q tests/upgrade

# `unit` installs its own debug build, so `install` (via regress) comes after it.
test: lint unit regress isolation integration upgrade
	@echo "make test: all suites passed"

bench: cluster
	scripts/bench.sh

# Accuracy against scikit-learn on one train/test split per dataset;
# rewrites the table in docs/accuracy.md.
bench-accuracy: cluster
	$(CONFIG); python3 bench/accuracy.py
