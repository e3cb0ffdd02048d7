#!/usr/bin/env bash
# `make demo`: a fresh demo database with Iris, then examples/demo.sql and
# examples/ambient.sql (the whole ambient lifecycle), then examples/features.sql
# (the feature store's) and examples/history.sql (history and audit); last,
# the HTML report of every project in target/report/.
set -euo pipefail
source "$(dirname "$0")/config.sh"
DB=ambient_demo
psql -U postgres -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -U postgres -qX -d "$DB" -v ON_ERROR_STOP=1 -f "$ROOT/examples/iris.sql"
psql -U postgres -X -d "$DB" -v ON_ERROR_STOP=1 -f "$ROOT/examples/demo.sql"
echo
echo "== Ambient operations: examples/ambient.sql"
psql -U postgres -X -d "$DB" -v ON_ERROR_STOP=1 -f "$ROOT/examples/ambient.sql"
echo
echo "== The feature store: examples/features.sql"
psql -U postgres -X -d "$DB" -v ON_ERROR_STOP=1 -f "$ROOT/examples/features.sql"
echo
echo "== History you can audit: examples/history.sql"
psql -U postgres -X -d "$DB" -v ON_ERROR_STOP=1 -f "$ROOT/examples/history.sql"
echo
echo "== The report: every project's page, and the overview"
python3 "$ROOT/scripts/report.py" "$DB" "$ROOT/target/report"
echo
echo "Connect to the demo database with:"
echo "  psql -h $PGHOST -p $PGPORT -U postgres $DB"
