#!/usr/bin/env bash
# A home of many small files, side by side (issue 46): a tree made by `gen-tree` (1-12
# KB files, half text, half noise, folders of 100), then for fvfs, restic and bupstash
# the first ingest, an unchanged re-run, a restore of the whole tree and a check that
# reads every byte, each with wall time and peak RSS; `fvfsc put -r` through a daemon
# too; the bytes each keeps. Page cache warm (the tree is read before each step).
#
# Usage: benches/scripts/bench-scale.sh [FILES]   (default 300000)
# Needs restic (Debian) and bupstash (`cargo install bupstash`, looked for on PATH and
# in ~/.cache/fvfs/tools/bin); prints a markdown table and ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/scripts/common.sh
files="${1:-300000}"
export PATH="$PATH:$HOME/.cache/fvfs/tools/bin"
for t in restic bupstash /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install restic time; cargo install bupstash)" >&2; exit 2; }
done
build_bins fvfsd fvfsc
cargo build --release --locked -p fvfs-benches --bin gen-tree >&2
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-scale.XXXXXX")"
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
pids=()
src="$work/src"
"$CARGO_TARGET_DIR/release/gen-tree" "$src" "$files" >&2
export RESTIC_PASSWORD=bench BUPSTASH_REPOSITORY="$work/bupstash" BUPSTASH_KEY="$work/bupstash.key"

declare -A secs rss
# run STEP CMD...: times CMD with the tree warm; records secs[STEP] and rss[STEP] (MB).
run() {
  local step=$1; shift
  tar -cf - -C "$src" . | cat >/dev/null
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
    echo "$step failed:" >&2; tail -5 "$work/err" "$work/out" >&2; exit 1; }
  read -r s m < "$work/time"
  secs[$step]=$s; rss[$step]=$((m / 1024))
  echo "$step: $s s, $((m / 1024)) MB" >&2
}
size() { du -sb "$1" | cut -f1; }
mb() { echo "$(( $1 / 1000000 ))"; }

# fvfs
export FVFS_HOME="$work/fvfs"
run fvfs-first "$bin/fvfsd" migrate --local-src "$src" --dest /home
run fvfs-rerun "$bin/fvfsd" migrate --local-src "$src" --dest /home
stored_fvfs=$(size "$work/fvfs")
run fvfs-restore "$bin/fvfsd" export /home "$work/out-fvfs"
rm -rf "$work/out-fvfs"
run fvfs-check "$bin/fvfsd" fsck --all --read-data
# put -r through a daemon on another store: the client's peak, then the daemon's.
serve "$bin" "$work/fvfs-put"
FVFS_URL="$url" run fvfs-put "$bin/fvfsc" put /home -r "$src"
put_daemon_mb=$(( $(awk '/VmHWM/ {print $2}' "/proc/${pids[-1]}/status") / 1024 ))
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# restic
restic init -q -r "$work/restic" >/dev/null
run restic-first restic backup -q -r "$work/restic" "$src"
run restic-rerun restic backup -q -r "$work/restic" "$src"
stored_restic=$(size "$work/restic")
run restic-restore restic restore -q -r "$work/restic" latest --target "$work/out-restic"
rm -rf "$work/out-restic"
run restic-check restic check -q -r "$work/restic" --read-data

# bupstash
bupstash new-key -o "$BUPSTASH_KEY"
bupstash init >/dev/null
run bupstash-first bupstash put -q --send-log "$work/sendlog" "$src"
id=$(cat "$work/out")
run bupstash-rerun bupstash put -q --send-log "$work/sendlog" "$src"
stored_bupstash=$(size "$work/bupstash")
mkdir "$work/out-bup"
run bupstash-restore bupstash restore -q --into "$work/out-bup" "id=$id"

ratio() { echo "scale=2; $1 / $2" | bc; }
echo
echo "$files files, $(mb "$(du -sb --apparent-size "$src" | cut -f1)") MB; $(nproc) cores"
echo
echo "| step | fvfs | restic | bupstash |"
echo "|---|---|---|---|"
for step in first rerun restore check; do
  b="-"; [ -n "${secs[bupstash-$step]:-}" ] && b="${secs[bupstash-$step]} s, ${rss[bupstash-$step]} MB"
  echo "| $step | ${secs[fvfs-$step]} s, ${rss[fvfs-$step]} MB | ${secs[restic-$step]} s, ${rss[restic-$step]} MB | $b |"
done
echo "| put -r (fvfsc; daemon peak $put_daemon_mb MB) | ${secs[fvfs-put]} s, ${rss[fvfs-put]} MB | - | - |"
echo "| stored | $(mb "$stored_fvfs") MB | $(mb "$stored_restic") MB | $(mb "$stored_bupstash") MB |"
echo
echo "- first ingest vs bupstash: $(ratio "${secs[bupstash-first]}" "${secs[fvfs-first]}")x, vs restic: $(ratio "${secs[restic-first]}" "${secs[fvfs-first]}")x"
echo "- restore vs restic: $(ratio "${secs[restic-restore]}" "${secs[fvfs-restore]}")x, vs bupstash: $(ratio "${secs[bupstash-restore]}" "${secs[fvfs-restore]}")x"
echo "- put -r / migrate: $(ratio "${secs[fvfs-put]}" "${secs[fvfs-first]}")x"
