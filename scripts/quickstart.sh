#!/usr/bin/env bash
# Builds fvfsd and fvfsc, imports a directory into the embedded default store
# ($FVFS_HOME, else ~/.local/share/fvfs) if you give one, and serves it on
# http://127.0.0.1:7734 until Ctrl-C. Then use fvfsc from another terminal.
# Usage: scripts/quickstart.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fvfs/target}"
cargo build --release --locked --bin fvfsd --bin fvfsc
bin="$CARGO_TARGET_DIR/release"
if [ -n "${1:-}" ]; then
  "$bin/fvfsd" migrate --local-src "$1" --dest "/$(basename "$(realpath "$1")")"
fi
"$bin/fvfsd" status
echo "fvfsc is $bin/fvfsc; stop the daemon with Ctrl-C"
exec "$bin/fvfsd" serve
