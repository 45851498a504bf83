#!/usr/bin/env bash
# First ingest of one tree, interleaved: `fvfsd migrate` into a fresh data dir, `fvfsc
# put -r` through a fresh daemon, and `restic backup` into a fresh repository, REPS
# rounds (default 3), each command after `sync` and a warm-up read of the tree. Prints
# every run (wall, user and system CPU; for put -r the client's and the daemon's CPU)
# and the medians with their ratios to restic.
#
# Interleaved because this machine is noisy and because the first writes after a large
# deletion run slow here (see benches/README.md): every work folder is deleted at the
# end, never between runs.
#
# Usage: REPS=3 benches/scripts/bench-ingest.sh [DIR]   (default: the Rust sysroot)
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/scripts/common.sh
command -v restic >/dev/null || { echo "missing restic: apt-get install restic" >&2; exit 2; }
build_bins fvfsd fvfsc
src="$(realpath "${1:-$(rustc --print sysroot)}")"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-bench.XXXXXX")"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
export RESTIC_PASSWORD=bench

# timed NAME CMD...: runs CMD after sync and a warm-up; appends "NAME wall user sys".
timed() {
  local name=$1; shift
  sync; tar -cf - "$src" 2>/dev/null | cat >/dev/null
  /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" >/dev/null 2>"$work/err" || {
    echo "$name failed:" >&2; cat "$work/err" >&2; exit 1; }
  echo "$name $(cat "$work/time")" | tee -a "$work/runs"
}
# CPU seconds (user, system) the process PID used so far.
cpu_of() { awk '{printf "%.2f %.2f", $14 / 100, $15 / 100}' "/proc/$1/stat"; }

for r in $(seq "${REPS:-3}"); do
  FVFS_HOME="$work/m$r" timed migrate "$bin/fvfsd" migrate --local-src "$src" --dest /tree
  serve "$bin" "$work/p$r"
  FVFS_URL=$url timed put "$bin/fvfsc" put /tree -r "$src"
  echo "  daemon CPU (user, system): $(cpu_of "${pids[-1]}")"
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
  restic init -q --repository-version 2 -r "$work/r$r" >/dev/null
  timed restic restic backup -q -r "$work/r$r" "$src"
done

med() { awk -v n="$1" '$1 == n {print $2}' "$work/runs" | median; }
restic_s=$(med restic)
echo
echo "tree: $src ($(find "$src" -type f | wc -l) files, $(du -sh --apparent-size "$src" | cut -f1)); ${REPS:-3} rounds"
for n in migrate put; do
  echo "$n: median $(med "$n") s, restic $restic_s s: $(echo "scale=2; $restic_s / $(med "$n")" | bc)x restic"
done
