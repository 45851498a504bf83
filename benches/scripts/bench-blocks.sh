#!/usr/bin/env bash
# Issue 47, side by side in one run: the bytes fvfs keeps once the idle rewrite packed
# cold chunks into blocks (`fvfsd gc --recompress` does its work at once), against
# bupstash and restic holding the same versions; the rewrite's CPU per GB; and what
# blocks cost readers: the same store before and after the rewrite (a copy taken
# before it), read cold (page cache dropped, so run as root) by `fvfsd export`,
# `fsck --read-data`, a fresh mount's `tar`, and random 4 KiB reads of small files
# through a fresh mount; medians of alternating runs. Both versions land in /tree (the
# second migrate adds to the first: HEAD holds both trees); a third store, where the
# first tree was removed before the second came, measures a restore of a HEAD that
# replaced an older version.
#
# Usage: benches/scripts/bench-blocks.sh [DIR [DIR2 [FILES]]]
#   DIR, DIR2  a tree and its second version (default: the stable then the nightly
#              Rust sysroot)
#   FILES      files of the generated tree of small files (default 300000; 0 skips it)
# Needs restic (Debian) and bupstash (see bench-scale.sh), fusermount3.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/scripts/common.sh
export PATH="$PATH:$HOME/.cache/fvfs/tools/bin"
for t in restic bupstash /usr/bin/time fusermount3; do
  command -v "$t" >/dev/null || { echo "missing $t (see bench-scale.sh)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run as root: cold reads drop the page cache" >&2; exit 2; }
build_bins fvfsd fvfsc
cargo build --release --locked -p fvfs-benches --bin gen-tree >&2
src="$(realpath "${1:-$(rustc +stable --print sysroot)}")"
src2="$(realpath "${2:-$(rustc +nightly --print sysroot)}")"
files="${3:-300000}"
rounds="${ROUNDS:-3}"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-blocks.XXXXXX")"
pids=()
trap 'mountpoint -q "$work/mnt" && fusermount3 -uz "$work/mnt"
  kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
export RESTIC_PASSWORD=bench BUPSTASH_KEY="$work/bupstash.key"
bupstash new-key -o "$BUPSTASH_KEY"

mb() { echo "$(( $1 / 1000000 ))"; }
ratio() { echo "scale=3; $1 / $2" | bc; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# timed CMD...: runs CMD; sets secs and cpu (user + system seconds).
timed() {
  /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
    echo "failed: $*" >&2; tail -n 5 "$work/err" "$work/out" >&2; exit 1; }
  read -r secs user sys < "$work/time"
  cpu=$(echo "$user + $sys" | bc)
}

# keep NAME DIRS...: each tool keeps every version of DIRS; sets the bytes each keeps
# (fvfs before and after its rewrite, and the rewrite's time), leaving fvfs's store in
# $work/NAME-fvfs and a copy of it from before the rewrite in $work/NAME-frames.
declare -A kept
keep() {
  local name=$1; shift
  export FVFS_HOME="$work/$name-fvfs"
  for d in "$@"; do "$bin/fvfsd" migrate --local-src "$d" --dest /tree >/dev/null 2>&1; done
  kept[$name-frames]=$(stored "$FVFS_HOME")
  cp -a "$FVFS_HOME" "$work/$name-frames"
  timed "$bin/fvfsd" gc --recompress
  kept[$name-rewrite-secs]=$secs; kept[$name-rewrite-cpu]=$cpu
  grep "segments recompressed" "$work/out" >&2 || true
  kept[$name-blocks]=$(stored "$FVFS_HOME")
  export BUPSTASH_REPOSITORY="$work/$name-bupstash"
  bupstash init >/dev/null
  for d in "$@"; do bupstash put -q "$d" >/dev/null; done
  kept[$name-bupstash]=$(stored "$BUPSTASH_REPOSITORY")
  restic init -q -r "$work/$name-restic" >/dev/null
  for d in "$@"; do restic backup -q -r "$work/$name-restic" "$d" >/dev/null; done
  kept[$name-restic]=$(stored "$work/$name-restic")
  kept[$name-raw]=$(du -scb --apparent-size "$@" | tail -1 | cut -f1)
}

# A mount of the store at $1 (a daemon serving it, a fresh cache) at $work/mnt.
mount_store() {
  serve "$bin" "$1"
  rm -rf "$work/mcache"; mkdir -p "$work/mnt"
  FVFS_URL="$url" "$bin/fvfsc" mount "$work/mnt" --cache-dir "$work/mcache" >"$work/mount.log" 2>&1 &
  mount_pid=$!
  wait_mounted "$work/mnt"
}
unmount_store() {
  "$bin/fvfsc" umount "$work/mnt" --cache-dir "$work/mcache" >/dev/null 2>&1 || fusermount3 -uz "$work/mnt"
  wait "$mount_pid" 2>/dev/null || true
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
  unset 'pids[-1]'
}

# reads STORE: one round of cold reads of the store at STORE; appends each step's
# seconds to $work/STEP.$(basename STORE).
reads() {
  local home=$1 tag; tag=$(basename "$1")
  cold; rm -rf "$work/export"
  timed env FVFS_HOME="$home" "$bin/fvfsd" export /tree "$work/export"
  echo "$secs" >> "$work/export.$tag"
  rm -rf "$work/export"
  cold
  timed env FVFS_HOME="$home" "$bin/fvfsd" fsck --all --read-data
  echo "$secs" >> "$work/fsck.$tag"
  mount_store "$home"; cold
  timed bash -c "tar -cf - -C '$work/mnt/tree' . | cat >/dev/null"
  echo "$secs" >> "$work/tar.$tag"
  unmount_store
  mount_store "$home"; cold
  timed python3 - "$work/mnt/tree" "$work/small-files" <<'PY'
import os, random, sys
root, listing = sys.argv[1], sys.argv[2]
names = [l.rstrip("\n") for l in open(listing)]
random.seed(47)
for rel in random.sample(names, min(2000, len(names))):
    with open(os.path.join(root, rel), "rb") as f:
        f.read(4096)
PY
  echo "$secs" >> "$work/random.$tag"
  unmount_store
}

keep sysroot "$src" "$src2"
# Small files of the version /tree holds, for the random reads.
(cd "$src2" && find . -type f -size -16k -printf '%P\n') > "$work/small-files"
for _ in $(seq 1 "$rounds"); do
  reads "$work/sysroot-frames"
  reads "$work/sysroot-fvfs"
done
med() { median < "$work/$1"; }

# A HEAD that replaced the older tree (the stable sysroot removed before the nightly
# came, both versions kept): a restore of HEAD from the store before and after the
# rewrite, which packs HEAD's chunks apart from the older version's.
replaced() {
  local home="$work/replaced-fvfs"
  FVFS_HOME="$home" "$bin/fvfsd" migrate --local-src "$src" --dest /tree >/dev/null 2>&1
  serve "$bin" "$home"
  FVFS_URL="$url" "$bin/fvfsc" rm -r /tree >/dev/null
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
  FVFS_HOME="$home" "$bin/fvfsd" migrate --local-src "$src2" --dest /tree >/dev/null 2>&1
  cp -a "$home" "$work/replaced-frames"
  FVFS_HOME="$home" "$bin/fvfsd" gc --recompress >/dev/null 2>&1
  for _ in $(seq 1 "$rounds"); do
    for tag in frames fvfs; do
      cold; rm -rf "$work/export"
      timed env FVFS_HOME="$work/replaced-$tag" "$bin/fvfsd" export /tree "$work/export"
      echo "$secs" >> "$work/replaced.$tag"
    done
  done
  rm -rf "$work/export" "$work/replaced-frames" "$home"
}
replaced

if [ "$files" -gt 0 ]; then
  "$CARGO_TARGET_DIR/release/gen-tree" "$work/many" "$files" >&2
  keep many "$work/many"
  rm -rf "$work/many"
fi

echo
echo "$(nproc) cores; trees: $src then $src2 ($(mb "${kept[sysroot-raw]}") MB); $files generated files"
echo
echo "| tree | fvfs frames | fvfs blocks | bupstash | restic | blocks / bupstash | rewrite (wall, CPU per GB raw) |"
echo "|---|---|---|---|---|---|---|"
for n in sysroot many; do
  [ -n "${kept[$n-blocks]:-}" ] || continue
  per_gb=$(echo "scale=1; ${kept[$n-rewrite-cpu]} * 1000000000 / ${kept[$n-raw]}" | bc)
  echo "| $n | $(mb "${kept[$n-frames]}") MB | $(mb "${kept[$n-blocks]}") MB | $(mb "${kept[$n-bupstash]}") MB | $(mb "${kept[$n-restic]}") MB | $(ratio "${kept[$n-blocks]}" "${kept[$n-bupstash]}") | ${kept[$n-rewrite-secs]} s, $per_gb s |"
done
echo
echo "Cold reads of the sysroot store, medians of $rounds (frames = before the rewrite):"
echo
echo "| read | frames | blocks | blocks / frames |"
echo "|---|---|---|---|"
for step in export fsck tar random; do
  f=$(med "$step.sysroot-frames"); b=$(med "$step.sysroot-fvfs")
  echo "| $step | $f s | $b s | $(ratio "$b" "$f") |"
done
f=$(med replaced.frames); b=$(med replaced.fvfs)
echo "| export, HEAD replacing the older tree | $f s | $b s | $(ratio "$b" "$f") |"
