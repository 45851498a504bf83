#!/usr/bin/env bash
# WebDAV through davfs2 against the FUSE mount (fvfsc mount) of the same daemon, side
# by side in one run: `tar -cf - .` of a tree (default: the Rust sysroot's share/doc;
# first pass and warm), sequential read of a 200 MB file (first and warm), and
# PROPFIND (Depth: 1) of a folder of 10,000 files with curl. Medians of REPS (default 3).
# Needs davfs2 and fuse3. Run from the repository root; PROFILE=debug reuses the test
# build.
set -euo pipefail
. "$(dirname "$0")/common.sh"
command -v mount.davfs >/dev/null || { echo "missing davfs2: apt-get install davfs2" >&2; exit 2; }
build_bins fvfsd fvfsc
src="$(realpath "${1:-$(rustc --print sysroot)/share/doc}")"
reps="${REPS:-3}"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-davbench.XXXXXX")"
pids=()
cleanup() {
  for m in "$work"/dav*; do umount "$m" 2>/dev/null || true; done
  for m in "$work"/fuse*; do fusermount3 -uz "$m" 2>/dev/null || true; done
  kill "${pids[@]}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/fvfsd" --home "$work/home" migrate --local-src "$src" --dest /t >/dev/null 2>&1
mkdir -p "$work/many"
for i in $(seq 1 10000); do : >"$work/many/f$i"; done
"$bin/fvfsd" --home "$work/home" migrate --local-src "$work/many" --dest /many >/dev/null 2>&1
mkdir -p "$work/bigdir"
head -c $((200 << 20)) /dev/urandom >"$work/bigdir/big.bin"
"$bin/fvfsd" --home "$work/home" migrate --local-src "$work/bigdir" --dest /b >/dev/null 2>&1
bigpath=b/big.bin
rm -rf "$work/many" "$work/bigdir"
serve "$bin" "$work/home"
export FVFS_URL="$url"
# davfs2 up to 1.7.1 lists nothing on kernels from 6.16 on with a smaller buffer.
printf 'buf_size 64\ndelay_upload 0\ncache_size 4096\n' >"$work/davfs2.conf"

dav_first=(); dav_warm=(); fuse_first=(); fuse_warm=(); dread1=(); dread2=(); fread1=(); fread2=(); prop=()
for r in $(seq 1 "$reps"); do
  mkdir -p "$work/dav$r" "$work/fuse$r"
  printf '\n\n' | mount.davfs -o conf="$work/davfs2.conf" "$url/dav/" "$work/dav$r" >/dev/null 2>&1
  "$bin/fvfsc" mount "$work/fuse$r" --cache-dir "$work/cache$r" --cache-size 20G >/dev/null 2>&1 &
  wait_mounted "$work/fuse$r"
  dav_first+=("$(elapsed tar_of "$work/dav$r/t")")
  dav_warm+=("$(elapsed tar_of "$work/dav$r/t")")
  fuse_first+=("$(elapsed tar_of "$work/fuse$r/t")")
  fuse_warm+=("$(elapsed tar_of "$work/fuse$r/t")")
  dread1+=("$(elapsed cat "$work/dav$r/$bigpath")")
  dread2+=("$(elapsed cat "$work/dav$r/$bigpath")")
  fread1+=("$(elapsed cat "$work/fuse$r/$bigpath")")
  fread2+=("$(elapsed cat "$work/fuse$r/$bigpath")")
  prop+=("$(elapsed curl -sf -X PROPFIND -H 'Depth: 1' "$url/dav/many/")")
  umount "$work/dav$r"
  fusermount3 -u "$work/fuse$r"
  rm -rf "$work/cache$r"
done
med() { printf '%s\n' "$@" | median; }
files=$(find "$src" -type f | wc -l)
echo "| measure ($files files of $(basename "$src"); 200 MB file) | davfs2 | fvfsc mount | davfs2/FUSE |"
echo "|---|---|---|---|"
for row in "tar, first pass:dav_first:fuse_first" "tar, warm:dav_warm:fuse_warm" \
           "200 MB read, first:dread1:fread1" "200 MB read, warm:dread2:fread2"; do
  IFS=: read -r label d f <<<"$row"
  declare -n da="$d" fa="$f"
  dm=$(med "${da[@]}"); fm=$(med "${fa[@]}")
  printf '| %s | %.2f s | %.2f s | %.2fx |\n' "$label" "$dm" "$fm" "$(echo "$dm / $fm" | bc -l)"
done
printf '| PROPFIND Depth 1 of 10,000 files (curl) | %.0f ms | | |\n' "$(echo "$(med "${prop[@]}") * 1000" | bc -l)"
