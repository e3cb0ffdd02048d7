#!/usr/bin/env bash
# Golden SQL sessions (tests/pg_regress) through Debian's pg_regress, against
# the private cluster, in a fresh database.
set -euo pipefail
source "$(dirname "$0")/config.sh"
PG_REGRESS="$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress"
DB=ambient_regress
psql -U postgres -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
cd "$ROOT"
OUT="$ROOT/target/regress"
rm -rf "$OUT"; mkdir -p "$OUT"
tests=$(cd "$ROOT/tests/pg_regress/sql" && ls *.sql | sed 's/\.sql$//' | sort)
if ! "$PG_REGRESS" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres \
     --dbname="$DB" --inputdir="$ROOT/tests/pg_regress" --outputdir="$OUT" \
     --bindir="$PGBIN" $tests; then
  cat "$OUT/regression.diffs" 2>/dev/null | head -200
  exit 1
fi
