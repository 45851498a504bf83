#!/usr/bin/env bash
# A short look at where a mount's time goes: migrate the tree (default: the Rust
# sysroot) into a daemon on loopback, mount it with an empty cache, `tar` it three
# times (cold, warm, warm again) and print each time with the CPU fvfsc and fvfsd
# used. PERF=1 also records the cold pass of both processes with perf and prints the
# top symbols; TRACE=1 counts the FUSE requests of each pass by kind, with the time
# each kind took (kernel tracepoints, fuse-census.py). One run: for figures to compare,
# use bench-mount.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/scripts/common.sh
source benches/scripts/common.sh
build_bins fvfsd fvfsc
src="$(realpath "${1:-$(rustc --print sysroot)}")"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-profile.XXXXXX")"
cleanup() {
  fusermount3 -uz "$work/mnt" 2>/dev/null || true
  pkill -f "$work/home" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$bin/fvfsd" --home "$work/home" migrate --local-src "$src" --dest /t >/dev/null 2>&1
"$bin/fvfsd" --home "$work/home" serve --listen 127.0.0.1:0 --no-mdns >"$work/serve.out" 2>/dev/null &
for _ in $(seq 1 200); do url=$(sed -n 's/^fvfsd: listening on //p' "$work/serve.out"); [ -n "$url" ] && break; sleep 0.05; done
export FVFS_URL="$url"
mkdir -p "$work/mnt"
"$bin/fvfsc" mount "$work/mnt" --cache-dir "$work/cache" --cache-size 20G >/dev/null 2>&1 &
for _ in $(seq 1 600); do mountpoint -q "$work/mnt" && break; sleep 0.05; done
client=$(pgrep -f "fvfsc mount $work/mnt"); daemon=$(pgrep -f "fvfsd --home $work/home serve")
cpu() { awk '{printf "user %.2f s, system %.2f s", $14/100, $15/100}' "/proc/$1/stat"; }
pass() { # NAME
  local t0 tr
  if [ -n "${TRACE:-}" ]; then
    perf record -e fuse:fuse_request_send -e fuse:fuse_request_end -a -o "$work/trace.data" >/dev/null 2>&1 & tr=$!
    sleep 0.3
  fi
  t0=$(now)
  tar -cf - -C "$work/mnt/t" . | cat >/dev/null
  printf '%-5s %6.2f s; so far fvfsc %s, fvfsd %s\n' "$1" "$(echo "$(now) - $t0" | bc)" "$(cpu "$client")" "$(cpu "$daemon")"
  if [ -n "${TRACE:-}" ]; then
    kill -INT "$tr"; wait "$tr" || true
    perf script -i "$work/trace.data" 2>/dev/null | benches/scripts/fuse-census.py
  fi
}
if [ -n "${PERF:-}" ]; then
  perf record -F 499 -g -p "$client,$daemon" -o "$work/perf.data" >/dev/null 2>&1 & rec=$!
  sleep 0.3
fi
pass cold
if [ -n "${PERF:-}" ]; then kill -INT "$rec"; wait "$rec" || true; fi
pass warm
pass warm3
fusermount3 -u "$work/mnt"
if [ -n "${PERF:-}" ]; then
  perf report -i "$work/perf.data" --no-children --sort comm,dso,sym --stdio 2>/dev/null | grep -E '^ +[0-9]+\.[0-9]+%' | head -40
fi
