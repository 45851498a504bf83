#!/usr/bin/env bash
# fvfsc mount side by side with bindfs (a passthrough FUSE mount of the same files), in
# one run, on a real tree (default: the Rust sysroot, about 50,000 files):
#  1. `tar -cf - .` of the whole tree: bindfs (warm), fvfs with a cold cache (every
#     chunk fetched from a daemon on loopback), fvfs warm (second pass: it also makes
#     the backing files of large files for passthrough), fvfs warm again (third pass);
#  2. sequential read of the largest file with fio: bindfs and fvfs, warm;
#  3. time to first byte of one file in a fresh mount (empty cache) of the tree, and
#     the bytes fetched for it (what the chunk cache holds afterwards).
# Needs bindfs and fio (Debian packages). Medians of REPS (default 3) runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/scripts/common.sh
source benches/scripts/common.sh
for t in bindfs fio fusermount3; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install bindfs fio fuse3" >&2; exit 2; }
done
build_bins fvfsd fvfsc
src="$(realpath "${1:-$(rustc --print sysroot)}")"
reps="${REPS:-3}"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-mountbench.XXXXXX")"
cleanup() {
  for m in "$work"/mnt*; do fusermount3 -uz "$m" 2>/dev/null || true; done
  pkill -f "$work/home" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/fvfsd" --home "$work/home" migrate --local-src "$src" --dest /t >/dev/null 2>&1
"$bin/fvfsd" --home "$work/home" serve --listen 127.0.0.1:0 --no-mdns >"$work/serve.out" 2>/dev/null &
for _ in $(seq 1 200); do url=$(sed -n 's/^fvfsd: listening on //p' "$work/serve.out"); [ -n "$url" ] && break; sleep 0.05; done
export FVFS_URL="$url"
mount_fvfs() { # DIR CACHE
  mkdir -p "$1"
  "$bin/fvfsc" mount "$1" --cache-dir "$2" --cache-size 20G >/dev/null 2>&1 &
  wait_mounted "$1"
}
mkdir -p "$work/mnt-bind"
bindfs "$src" "$work/mnt-bind"
big=$(find "$src" -type f -printf '%s %P\n' | sort -n | tail -1 | cut -d' ' -f2-)
files=$(find "$src" -type f | wc -l)
tar_of "$src"; tar_of "$work/mnt-bind"   # warm the page cache under bindfs

bind=(); cold=(); warm=(); warm3=(); fio_b=(); fio_f=(); ttfb=(); fetched=()
for r in $(seq 1 "$reps"); do
  bind+=("$(elapsed tar_of "$work/mnt-bind")")
  mount_fvfs "$work/mnt$r" "$work/cache$r"
  cold+=("$(elapsed tar_of "$work/mnt$r/t")")
  warm+=("$(elapsed tar_of "$work/mnt$r/t")")
  warm3+=("$(elapsed tar_of "$work/mnt$r/t")")
  for target in "$work/mnt-bind/$big" "$work/mnt$r/t/$big"; do
    cat "$target" >/dev/null
    bw=$(fio --name=seq --filename="$target" --rw=read --bs=1M --readonly --output-format=terse --terse-version=3 | awk -F';' '{print $7}')
    if [[ "$target" == *mnt-bind* ]]; then fio_b+=("$bw"); else fio_f+=("$bw"); fi
  done
  fusermount3 -u "$work/mnt$r"
  # Time to first byte in a fresh mount with an empty cache.
  mount_fvfs "$work/mnt-f$r" "$work/cache-f$r"
  ttfb+=("$(elapsed head -c 1 "$work/mnt-f$r/t/$big")")
  fetched+=("$(du -sb "$work/cache-f$r/chunks" | cut -f1)")
  fusermount3 -u "$work/mnt-f$r"
done
fusermount3 -u "$work/mnt-bind"
m() { printf '%s\n' "$@" | median; }
echo "samples: bind ${bind[*]}; cold ${cold[*]}; warm ${warm[*]}; warm3 ${warm3[*]}" >&2
bm=$(m "${bind[@]}"); cm=$(m "${cold[@]}"); wm=$(m "${warm[@]}"); w3=$(m "${warm3[@]}")
fb=$(m "${fio_b[@]}"); ff=$(m "${fio_f[@]}"); tm=$(m "${ttfb[@]}"); fm=$(m "${fetched[@]}")
echo "| measure ($files files, $(basename "$src")) | fvfs | bindfs | ratio |"
echo "|---|---|---|---|"
printf '| tar -cf - . warm | %.2f s | %.2f s | fvfs/bindfs %.2fx |\n' "$wm" "$bm" "$(echo "$wm / $bm" | bc -l)"
printf '| tar -cf - . warm, third pass | %.2f s | %.2f s | fvfs/bindfs %.2fx |\n' "$w3" "$bm" "$(echo "$w3 / $bm" | bc -l)"
printf '| tar -cf - . cold cache (daemon on loopback) | %.2f s | | fvfs/bindfs %.2fx, cold/warm %.2fx |\n' "$cm" "$(echo "$cm / $bm" | bc -l)" "$(echo "$cm / $w3" | bc -l)"
printf '| fio sequential read of %s, warm | %.0f MB/s | %.0f MB/s | %.2fx |\n' "$big" "$(echo "$ff / 1000" | bc -l)" "$(echo "$fb / 1000" | bc -l)" "$(echo "$ff / $fb" | bc -l)"
printf '| first byte of %s in a fresh mount | %.1f ms | | fetched %s bytes |\n' "$big" "$(echo "$tm * 1000" | bc -l)" "$fm"
