#!/usr/bin/env bash
# Builds and installs an earlier release of pg_ambient from its commit, for
# the upgrade test: `install-release.sh 0.1.0` puts 0.1.0's library, control
# file and install script where the server looks, exactly as that release
# shipped them. `make install` puts the current version back afterwards.
# AMBIENT_RELEASE_PROFILE=release builds it optimised, in a target directory
# of its own, for `make bench`'s per-row figures against the last release.
set -euo pipefail
source "$(dirname "$0")/config.sh"
version="$1"
commit="$(sed -n "s/^\"$version\" *= *\"\([0-9a-f]*\)\"/\1/p" "$ROOT/sql/releases.toml")"
[[ -n "$commit" ]] || { echo "install-release: no commit for $version in sql/releases.toml" >&2; exit 2; }
src="$ROOT/target/release-src/$version"
if [[ ! -f "$src/Cargo.toml" ]]; then
  # A shallow clone may lack the release's commit: fetch it from origin.
  git -C "$ROOT" cat-file -e "$commit^{commit}" 2>/dev/null \
    || git -C "$ROOT" fetch --quiet origin "$commit"
  rm -rf "$src"; mkdir -p "$src"
  git -C "$ROOT" archive "$commit" | tar -x -C "$src"
fi
# A target directory of its own: in a shared one the release's library and
# schema generator have the same file names as the current build's, and
# cargo can take one for the other.
target="$ROOT/target/release-build/$version"
flags=()
if [[ "${AMBIENT_RELEASE_PROFILE:-}" == release ]]; then
  target="$target-release"
  flags=(--release)
fi
(cd "$src" && CARGO_TARGET_DIR="$target" \
   cargo pgrx install "${flags[@]}" --pg-config "$PG_CONFIG" >/dev/null)
# The release's install script must be the one kept in sql/ (never edited).
cmp "$("$PG_CONFIG" --sharedir)/extension/pg_ambient--$version.sql" "$ROOT/sql/pg_ambient--$version.sql"
