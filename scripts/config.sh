# Sourced by the scripts: reads pgrx.toml into shell variables.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
toml() { sed -n "s/^$1 *= *\"\{0,1\}\([^\"]*\)\"\{0,1\}.*/\1/p" "$ROOT/pgrx.toml"; }
PG_MAJOR="$(toml pg_major)"
PG_CONFIG="$(toml pg_config)"
PGRX_VERSION="$(toml pgrx_version)"
PGPORT="$(toml dev_port)"
PGDATA="$ROOT/$(toml dev_data_dir)"
PGBIN="$(dirname "$PG_CONFIG")"
PGHOST=/tmp
export PGPORT PGHOST
# Tools cargo installed (cargo-pgrx) live here.
export PATH="$HOME/.cargo/bin:$PATH"

# postgres runs as its own OS user: let it traverse every parent of a path
# under the work tree (clones can sit in folders only root may enter).
allow_postgres_to_reach() {
  local d="$1"
  while [[ "$d" != / ]]; do d="$(dirname "$d")"; chmod o+x "$d" 2>/dev/null || true; done
}
