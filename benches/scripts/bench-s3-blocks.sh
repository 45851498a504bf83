#!/usr/bin/env bash
# Issue 47, the bucket: what the S3 tier keeps for two versions of a tree (the stable
# then the nightly Rust sysroot) as replication sent it, a frame per chunk, and once
# it followed the local blocks (`fvfsd gc --recompress`: the local rewrite, the upload
# of its blocks, then S3 compaction), against restic's repository of the same versions
# in the same Garage; that gc's wall and CPU time; and a restore from the bucket alone
# (`recover --from-s3`, then `export`, page cache dropped, each into a new folder) of
# a copy of the bucket taken before against the bucket after, alternating, medians.
#
# Usage: benches/scripts/bench-s3-blocks.sh [DIR [DIR2]]     (REPS=3 restores each)
# Needs root (drops the page cache), restic, the aws CLI (pip install awscli).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/scripts/common.sh
for t in restic aws /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run as root: restores drop the page cache" >&2; exit 2; }
build_bins fvfsd fvfs-garage
"$bin/fvfs-garage" install
src="$(realpath "${1:-$(rustc +stable --print sysroot)}")"
src2="$(realpath "${2:-$(rustc +nightly --print sysroot)}")"
reps="${REPS:-3}"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-s3blocks.XXXXXX")"
trap 'pkill -f "$work/" 2>/dev/null || true; "$bin/fvfs-garage" stop "$work/garage" || true; rm -rf "$work"' EXIT
# shellcheck disable=SC1090
source "$("$bin/fvfs-garage" start "$work/garage")"
export FVFS_PASSPHRASE=bench-passphrase RESTIC_PASSWORD=bench
s3url="s3://$FVFS_S3_BUCKET"
aws_() { aws --endpoint-url "$FVFS_S3_ENDPOINT" --region garage "$@"; }
# bucket PREFIX: the bytes of the objects under PREFIX.
bucket() { aws_ s3 ls --recursive --summarize "$s3url/$1/" | sed -n 's/^ *Total Size: //p'; }
mb() { echo "$(( $1 / 1000000 ))"; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
conf() { printf '[tiers.s3]\nbucket = "%s"\nendpoint = "%s"\nregion = "garage"\nprefix = "%s"\n[gc]\nrecompress_idle_secs = 0\n' \
  "$FVFS_S3_BUCKET" "$FVFS_S3_ENDPOINT" "$1"; }
conf fvfs > "$work/c.toml"
conf fvfs-frames > "$work/frames.toml"
fvfsd() { "$bin/fvfsd" --config "$work/c.toml" "$@"; }

# Both versions in the bucket, as the daemon replicates them.
home="$work/home"
fvfsd --home "$home" serve --listen 127.0.0.1:0 --no-mdns >"$work/serve.out" 2>"$work/serve.err" &
for _ in $(seq 1 200); do url=$(sed -n 's/^fvfsd: listening on //p' "$work/serve.out"); [ -n "$url" ] && break; sleep 0.05; done
[ -n "$url" ] || { echo "fvfsd did not start: $(cat "$work/serve.err")" >&2; exit 1; }
for d in "$src" "$src2"; do
  fvfsd --home "$home" migrate --local-src "$d" --dest /tree >/dev/null 2>&1
done
curl -sf -XPOST -H "X-Fvfs-Client: bench" "$url/v1/admin/flush" >/dev/null
pkill -TERM -f "home $home serve"; while pgrep -f "home $home serve" >/dev/null; do sleep 0.1; done
frames=$(bucket fvfs/packs)
aws_ s3 cp --quiet --recursive "$s3url/fvfs/" "$s3url/fvfs-frames/"

/usr/bin/time -f "%e %U %S" -o "$work/time" "$bin/fvfsd" --config "$work/c.toml" --home "$home" gc --recompress > "$work/gc.out" 2>&1
read -r gc_secs gc_user gc_sys < "$work/time"
grep -E "recompressed|follows|s3 packs" "$work/gc.out" >&2 || true
blocks=$(bucket fvfs/packs)

repo="s3:$FVFS_S3_ENDPOINT/$FVFS_S3_BUCKET/restic"
restic -r "$repo" init >/dev/null
for d in "$src" "$src2"; do restic -r "$repo" backup -q "$d" >/dev/null 2>&1; done
restic_bytes=$(bucket restic)
raw=$(du -scb --apparent-size "$src" "$src2" | tail -1 | cut -f1)

# restore CONFIG TAG: recover from the bucket alone, then export, cold; appends seconds.
restore() {
  local h="$work/r-$2" out="$work/out-$2" t0
  rm -rf "$h" "$out"; cold
  t0=$(now)
  "$bin/fvfsd" --config "$1" --home "$h" recover --from-s3 >/dev/null 2>&1
  "$bin/fvfsd" --config "$1" --home "$h" export /tree "$out" >/dev/null 2>&1
  echo "$(now) - $t0" | bc >> "$work/restore.$2"
  rm -rf "$h" "$out"
}
for _ in $(seq 1 "$reps"); do restore "$work/frames.toml" frames; restore "$work/c.toml" blocks; done

echo
echo "$(nproc) cores; $src then $src2 ($(mb "$raw") MB raw), Garage on loopback, encrypted bucket"
echo
echo "| bucket | bytes | vs restic |"
echo "|---|---|---|"
echo "| fvfs, frames as replicated | $(mb "$frames") MB | $(echo "scale=3; $frames / $restic_bytes" | bc) |"
echo "| fvfs, after gc --recompress (blocks followed) | $(mb "$blocks") MB | $(echo "scale=3; $blocks / $restic_bytes" | bc) |"
echo "| restic 0.14 | $(mb "$restic_bytes") MB | 1 |"
echo
echo "gc --recompress: $gc_secs s wall, $(echo "$gc_user + $gc_sys" | bc) s CPU"
printf 'restore from the bucket alone (recover + export, cold), median of %s: frames %.2f s, blocks %.2f s (%s / %s)\n' \
  "$reps" "$(median < "$work/restore.frames")" "$(median < "$work/restore.blocks")" \
  "$(paste -sd, "$work/restore.frames")" "$(paste -sd, "$work/restore.blocks")"
