#!/usr/bin/env bash
# The daemon and client over loopback: chunk PUT/GET throughput with 1, 4 and 16
# clients, the 10,000-id missing question, ls of a 10,000-entry directory (in process
# and as a whole `fvfsc ls`), then `fvfsc put -r` of a real tree side by side with
# `restic backup` of the same tree, on the same machine, warm page cache.
#
# Usage: benches/scripts/bench-daemon.sh [DIR]   (default: the Rust toolchain's sysroot)
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/scripts/common.sh
command -v restic >/dev/null || { echo "missing restic: apt-get install restic" >&2; exit 2; }
cargo build --release --locked --bins >&2
bin="$CARGO_TARGET_DIR/release"
src="$(realpath "${1:-$(rustc --print sysroot)}")"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-bench.XXXXXX")"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

serve "$bin" "$work/load"
"$bin/http-load" "$url"
ls_ms=()
for _ in $(seq 11); do
  a=$(date +%s%N); FVFS_URL=$url "$bin/fvfsc" ls /bench-ls >/dev/null; b=$(date +%s%N)
  ls_ms+=($(( (b - a) / 1000000 )))
done
echo "fvfsc ls of the 10,000-entry directory, whole command: median $(printf '%s\n' "${ls_ms[@]}" | sort -n | sed -n 6p) ms"

tar -cf - "$src" >/dev/null 2>&1 || true
serve "$bin" "$work/put"
a=$(date +%s%N); FVFS_URL=$url "$bin/fvfsc" put /tree -r "$src" >/dev/null 2>&1 || true; b=$(date +%s%N)
fvfs_s=$(echo "scale=2; ($b - $a) / 1000000000" | bc)
export RESTIC_PASSWORD=bench
restic init -q --repository-version 2 -r "$work/restic" >/dev/null
tar -cf - "$src" >/dev/null 2>&1 || true
a=$(date +%s%N); restic backup -q -r "$work/restic" "$src" >/dev/null; b=$(date +%s%N)
restic_s=$(echo "scale=2; ($b - $a) / 1000000000" | bc)
echo
echo "tree: $src ($(find "$src" -type f | wc -l) files, $(du -sh --apparent-size "$src" | cut -f1))"
echo "fvfsc put -r: ${fvfs_s} s; restic backup: ${restic_s} s; restic / fvfs = $(echo "scale=2; $restic_s / $fvfs_s" | bc)x"
