#!/usr/bin/env bash
# A home of many small files, side by side (issue 46): a tree made by `gen-tree` (1-12
# KB files, half text, half noise, folders of 100), then for fvfs, restic and bupstash
# the first ingest, an unchanged re-run, a restore of the whole tree and a check that
# reads every byte, each with wall time and peak RSS; `fvfsc put -r` through a daemon
# too; a fresh mount's `find` and `tar` of the tree (fvfs and `restic mount`); a
# collection after half the tree is deleted, keeping the newest backup; the bytes each
# keeps, and fvfs's metadata among them. Page cache warm (the tree is read before each
# step) when the tree takes less than half the memory; a larger tree (3,000,000 files is
# 20 GB) is read from the disk by every step. Each store is removed once its steps are
# done, so that 3,000,000 files fit in about 80 GB beside their tree.
#
# Usage: [PEERS=no] benches/scripts/bench-scale.sh [FILES]   (default 300000; PEERS=no
# runs fvfs alone, for trees too large to keep three copies of)
# Needs restic (Debian) and bupstash (`apt-get install libsodium-dev pkg-config`, then
# `cargo install bupstash --version 0.12.0 --locked --root ~/.cache/fvfs/tools`; looked
# for on PATH and in ~/.cache/fvfs/tools/bin); prints a markdown table and ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/scripts/common.sh
files="${1:-300000}"
export PATH="$PATH:$HOME/.cache/fvfs/tools/bin"
for t in restic bupstash /usr/bin/time fusermount3; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install restic time libsodium-dev pkg-config; cargo install bupstash --version 0.12.0 --locked --root ~/.cache/fvfs/tools)" >&2; exit 2; }
done
build_bins fvfsd fvfsc
cargo build --release --locked -p fvfs-benches --bin gen-tree >&2
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-scale.XXXXXX")"
trap 'for m in "$work/mnt" "$work/rmnt"; do mountpoint -q "$m" && fusermount3 -uz "$m"; done
  kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
pids=()
src="$work/src"
"$CARGO_TARGET_DIR/release/gen-tree" "$src" "$files" >&2
tree_bytes=$(du -sb --apparent-size "$src" | cut -f1)
warm=yes
if [ "$tree_bytes" -gt $(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 512 )) ]; then
  warm=no
  echo "the tree is larger than half the memory: every step reads it from the disk" >&2
fi
export RESTIC_PASSWORD=bench BUPSTASH_REPOSITORY="$work/bupstash" BUPSTASH_KEY="$work/bupstash.key"

declare -A secs rss
hwm() { echo $(( $(awk '/VmHWM/ {print $2}' "/proc/$1/status") / 1024 )); }
# walk WHO DIR: `find` of every file and `tar` of the whole tree under DIR (a mount),
# timed as WHO-find and WHO-tar.
walk() {
  run "$1-find" bash -c "find '$2' -type f | wc -l"
  echo "  $(cat "$work/out") files" >&2
  run "$1-tar" bash -c "tar -cf - -C '$2' . | cat >/dev/null"
}
# run STEP CMD...: times CMD (the tree warmed first when it fits); records secs[STEP] and rss[STEP] (MB).
# What the step before wrote is on the disk first: the first ingest came right after
# the generator's 2 GB and took 14.3 s against 8.7-10.1 s in the runs around it.
run() {
  local step=$1; shift
  sync
  if [ "$warm" = yes ]; then tar_of "$src"; fi
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
    echo "$step failed:" >&2; tail -n 5 "$work/err" "$work/out" >&2; exit 1; }
  read -r s m < "$work/time"
  secs[$step]=$s; rss[$step]=$((m / 1024))
  echo "$step: $s s, $((m / 1024)) MB" >&2
}
mb() { echo "$(( $1 / 1000000 ))"; }

# fvfs
export FVFS_HOME="$work/fvfs"
run fvfs-first "$bin/fvfsd" migrate --local-src "$src" --dest /home
run fvfs-rerun "$bin/fvfsd" migrate --local-src "$src" --dest /home
stored_fvfs=$(stored "$work/fvfs")
# Metadata: the stat cache, the manifest's and the pack index's databases (issue 46).
meta_fvfs=$(du -sB1 "$work/fvfs/statcache" "$work/fvfs/meta" "$work/fvfs/chunks/index" | awk '{s += $1} END {print s}')
run fvfs-restore "$bin/fvfsd" export /home "$work/out-fvfs"
rm -rf "$work/out-fvfs"
run fvfs-check "$bin/fvfsd" fsck --all --read-data
rm -rf "$work/fvfs"
# put -r through a daemon on another store: the client's peak, then the daemon's.
serve "$bin" "$work/fvfs-put"
FVFS_URL="$url" run fvfs-put "$bin/fvfsc" put /home -r "$src"
put_daemon_mb=$(hwm "${pids[-1]}")
# A fresh mount of that store: a walk stating every name, then a tar reading every byte
# (cold: nothing cached on the device).
mkdir "$work/mnt"
FVFS_URL="$url" "$bin/fvfsc" mount "$work/mnt" --cache-dir "$work/mcache" >"$work/mount.log" 2>&1 &
mount_pid=$!
until mountpoint -q "$work/mnt"; do
  kill -0 "$mount_pid" 2>/dev/null || { echo "the mount failed: $(cat "$work/mount.log")" >&2; exit 1; }
  sleep 0.05
done
walk "fvfs" "$work/mnt/home"
mount_mb=$(hwm "$mount_pid"); mount_daemon_mb=$(hwm "${pids[-1]}")
"$bin/fvfsc" umount "$work/mnt" --cache-dir "$work/mcache" >/dev/null
wait "$mount_pid" 2>/dev/null || true
# Half the top folders removed, then a collection keeping only the newest version.
for d in $(ls "$src" | head -n "$(( $(ls "$src" | wc -l) / 2 ))"); do
  FVFS_URL="$url" "$bin/fvfsc" rm -r "/home/$d" >/dev/null
done
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
FVFS_HOME="$work/fvfs-put" run fvfs-gc "$bin/fvfsd" gc --keep-last 1 --grace-secs 0
rm -rf "$work/fvfs-put" "$work/mcache"

if [ "${PEERS:-yes}" != no ]; then
# restic
restic init -q -r "$work/restic" >/dev/null
run restic-first restic backup -q -r "$work/restic" "$src"
run restic-rerun restic backup -q -r "$work/restic" "$src"
stored_restic=$(stored "$work/restic")
run restic-restore restic restore -q -r "$work/restic" latest --target "$work/out-restic"
rm -rf "$work/out-restic"
run restic-check restic check -q -r "$work/restic" --read-data

mkdir "$work/rmnt"
restic mount -q -r "$work/restic" "$work/rmnt" >"$work/rmount.log" 2>&1 &
rmount_pid=$!
until [ -d "$work/rmnt/snapshots/latest" ]; do
  kill -0 "$rmount_pid" 2>/dev/null || { echo "restic mount failed: $(cat "$work/rmount.log")" >&2; exit 1; }
  sleep 0.1
done
walk restic "$work/rmnt/snapshots/latest$src"
rmount_mb=$(hwm "$rmount_pid")
fusermount3 -u "$work/rmnt" || fusermount -u "$work/rmnt"
wait "$rmount_pid" 2>/dev/null || true

# bupstash
bupstash new-key -o "$BUPSTASH_KEY"
bupstash init >/dev/null
run bupstash-first bupstash put -q --send-log "$work/sendlog" "$src"
id=$(cat "$work/out")
run bupstash-rerun bupstash put -q --send-log "$work/sendlog" "$src"
id2=$(cat "$work/out")
stored_bupstash=$(stored "$work/bupstash")
mkdir "$work/out-bup"
run bupstash-restore bupstash restore -q --into "$work/out-bup" "id=$id"
rm -rf "$work/out-bup"

# Half the tree deleted, then each one's collection keeping only the newest backup.
ls "$src" | head -n "$(( $(ls "$src" | wc -l) / 2 ))" | while read -r d; do rm -rf "${src:?}/$d"; done
restic backup -q -r "$work/restic" "$src" >/dev/null
run restic-gc restic forget -q -r "$work/restic" --keep-last 1 --prune
bupstash put -q --send-log "$work/sendlog" "$src" >/dev/null
bupstash rm -q "id=$id" >/dev/null
bupstash rm -q "id=$id2" >/dev/null
run bupstash-gc bupstash gc -q
fi

ratio() { echo "scale=2; $1 / $2" | bc; }
# cell STEP: "SECS s, RSS MB" of STEP, or "-" if it did not run.
cell() { if [ -n "${secs[$1]:-}" ]; then echo "${secs[$1]} s, ${rss[$1]} MB"; else echo "-"; fi; }
echo
echo "$files files, $(mb "$tree_bytes") MB; $(nproc) cores"
echo
echo "| step | fvfs | restic | bupstash |"
echo "|---|---|---|---|"
for step in first rerun restore check; do
  echo "| $step | $(cell "fvfs-$step") | $(cell "restic-$step") | $(cell "bupstash-$step") |"
done
echo "| put -r (fvfsc; daemon peak $put_daemon_mb MB) | $(cell fvfs-put) | - | - |"
echo "| find through a fresh mount | ${secs[fvfs-find]} s | ${secs[restic-find]:--} s | - |"
echo "| tar through that mount | ${secs[fvfs-tar]} s | ${secs[restic-tar]:--} s | - |"
echo "| the mount's peak (fvfsd serving it) | $mount_mb MB ($mount_daemon_mb MB) | ${rmount_mb:--} MB | - |"
echo "| gc after deleting half (keep the newest) | $(cell fvfs-gc) | $(cell restic-gc) | $(cell bupstash-gc) |"
echo "| stored (allocated) | $(mb "$stored_fvfs") MB | $(mb "${stored_restic:-0}") MB | $(mb "${stored_bupstash:-0}") MB |"
echo "| fvfs metadata (stat cache, manifest, pack index; allocated) | $(mb "$meta_fvfs") MB, $((meta_fvfs / files)) bytes a file | - | - |"
echo
echo "- put -r / migrate: $(ratio "${secs[fvfs-put]}" "${secs[fvfs-first]}")x"
[ "${PEERS:-yes}" = no ] && exit 0
echo "- first ingest vs bupstash: $(ratio "${secs[bupstash-first]}" "${secs[fvfs-first]}")x, vs restic: $(ratio "${secs[restic-first]}" "${secs[fvfs-first]}")x"
echo "- restore vs restic: $(ratio "${secs[restic-restore]}" "${secs[fvfs-restore]}")x, vs bupstash: $(ratio "${secs[bupstash-restore]}" "${secs[fvfs-restore]}")x"
