#!/usr/bin/env bash
# Concurrency specs (tests/isolation) through Debian's pg_isolation_regress,
# against the private cluster, in a fresh database with the extension.
set -euo pipefail
source "$(dirname "$0")/config.sh"
PG_ISOLATION_REGRESS="$(dirname "$("$PG_CONFIG" --pgxs)")/../test/isolation/pg_isolation_regress"
DB=ambient_isolation
psql -U postgres -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -U postgres -qX -d "$DB" -c "CREATE EXTENSION pg_ambient"
OUT="$ROOT/target/isolation"
rm -rf "$OUT"; mkdir -p "$OUT"
specs=$(cd "$ROOT/tests/isolation/specs" && ls *.spec | sed 's/\.spec$//' | sort)
if ! "$PG_ISOLATION_REGRESS" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres \
     --dbname="$DB" --inputdir="$ROOT/tests/isolation" --outputdir="$OUT" \
     --bindir="$PGBIN" $specs; then
  cat "$OUT/output_iso/regression.diffs" "$OUT/regression.diffs" 2>/dev/null | head -200
  exit 1
fi
