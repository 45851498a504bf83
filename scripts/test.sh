#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (system tools,
# the Garage S3 server), builds the real binaries, starts Garage on loopback, runs every
# unit, property and end-to-end test, and stops Garage at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# Reuse one build cache outside the clone, so CI does not rebuild everything each time.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fvfs/target}"

scripts/install-deps.sh
# pjdfstest, the POSIX file-system suite run on a mount (tests/tests/pjdfstest.rs), built
# once (~2 min) into a cache folder that later runs reuse.
tools="$HOME/.cache/fvfs/tools"
[ -x "$tools/bin/pjdfstest" ] || cargo install pjdfstest --version 0.2.2 --locked --root "$tools"
export PJDFSTEST="$tools/bin/pjdfstest"
# The real binaries, among them fvfs-garage, which installs and runs Garage.
cargo build --workspace --bins --locked
garage="$CARGO_TARGET_DIR/debug/fvfs-garage"
# Garage 2.5.0, built once (~10 min) into a cache folder that later runs reuse.
"$garage" install

garage_dir="$(mktemp -d "${TMPDIR:-/tmp}/fvfs-garage.XXXXXX")"
trap '"$garage" stop "$garage_dir"; rm -rf "$garage_dir"' EXIT
# shellcheck disable=SC1090
source "$("$garage" start "$garage_dir")"
# Tests that stop and restart an S3 server start their own (fvfs-garage's library,
# with the GARAGE_BIN this exported).

# Feature `integration`: the tests that need root, FUSE, namespaces and Garage too.
cargo test --workspace --locked --features fvfs-tests/integration,fvfs-powerloss/integration,fvfs-tiering/integration,fvfs-garage/integration
