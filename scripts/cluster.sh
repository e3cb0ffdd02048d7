#!/usr/bin/env bash
# Starts (or stops) the private cluster the demo and tests use: data under
# target/, port from pgrx.toml, run as the postgres OS user.
set -euo pipefail
source "$(dirname "$0")/config.sh"
as_pg() { runuser -u postgres -- env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$@"; }

case "${1:-start}" in
  start)
    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
      mkdir -p "$PGDATA"
      chown postgres:postgres "$PGDATA"
      allow_postgres_to_reach "$PGDATA"
      as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
      cat >> "$PGDATA/postgresql.conf" <<CONF
port = $PGPORT
unix_socket_directories = '/tmp'
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
max_parallel_workers_per_gather = 2
CONF
    fi
    if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      # RUST_BACKTRACE=1, as containers often set it: pgrx would then append
      # Rust backtraces to errors' DETAIL, and every test checks it does not.
      as_pg RUST_BACKTRACE=1 "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w start >/dev/null
    fi
    ;;
  stop)
    if [[ -f "$PGDATA/PG_VERSION" ]]; then
      as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
    fi
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
