#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, builds the
# real binaries, and runs every unit, property and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
# Reuse one build cache outside the clone, so CI does not rebuild everything each time.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fvfs/target}"

scripts/install-deps.sh
cargo build --workspace --bins --locked
cargo test --workspace --locked
