#!/usr/bin/env bash
# `fvfsd export` of a real tree (default: the Rust sysroot) by two fvfsd binaries side
# by side on one store, in one run: the one built here and BEFORE (an fvfsd built from
# an older commit, say the one before a change to export). Each run exports the whole
# tree into an empty folder on the same disk (warm page cache, the store's local tier),
# REPS runs each, taking turns at going first; prints each time, the medians and the
# ratio. EXPORT_TO names another folder to export into (a tmpfs such as /dev/shm
# measures export's own cost; on a disk, writeback of the run before dominates).
# Usage: BEFORE=/path/to/old/fvfsd benches/scripts/bench-export.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/scripts/common.sh
source benches/scripts/common.sh
build_bins fvfsd
after="$bin/fvfsd"
before="${BEFORE:?set BEFORE to the fvfsd to compare with}"
src="$(realpath "${1:-$(rustc --print sysroot)}")"
reps="${REPS:-5}"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-exportbench.XXXXXX")"
out="$(mktemp -d "${EXPORT_TO:-$work}/fvfs-export.XXXXXX")"
trap 'rm -rf "$work" "$out"' EXIT

FVFS_HOME="$work/store" "$after" migrate --local-src "$src" >/dev/null
files=$(find "$src" -type f | wc -l)
echo "export of $src ($files files, $(du -sh "$src" | cut -f1)) by two binaries, $reps runs each"
one() { # BINARY -> seconds of one export into a fresh folder
  rm -rf "$out/tree"
  sync
  elapsed env FVFS_HOME="$work/store" "$1" export / "$out/tree"
}
: >"$work/before.t"
: >"$work/after.t"
for r in $(seq 1 "$reps"); do
  if [ $((r % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  for which in $order; do
    if [ "$which" = before ]; then t=$(one "$before"); else t=$(one "$after"); fi
    echo "$t" >>"$work/$which.t"
    echo "run $r $which: $t s"
  done
done
b=$(median <"$work/before.t")
a=$(median <"$work/after.t")
echo "median: before $b s, after $a s, after/before $(echo "scale=3; $a / $b" | bc)"
