#!/usr/bin/env bash
# Builds fvfsd and imports a directory into the embedded default store
# ($FVFS_HOME, else ~/.local/share/fvfs), then shows what it holds.
# Usage: scripts/quickstart.sh [DIR]   (default: the Rust toolchain's sysroot)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fvfs/target}"
src="${1:-$(rustc --print sysroot)}"
cargo build --release --locked --bin fvfsd
fvfsd="$CARGO_TARGET_DIR/release/fvfsd"
"$fvfsd" migrate --local-src "$src" --dest "/$(basename "$src")"
"$fvfsd" status
"$fvfsd" log -n 5
