#!/usr/bin/env bash
# Restores from S3 alone, side by side with restic on the same private Garage 2.5.0 on
# loopback, in one run, on a real tree (default: the Rust sysroot):
#  1. durable in the bucket: `fvfsd migrate` through a running daemon + `POST
#     /v1/admin/flush`, versus `restic backup` (both from a warm page cache), REPS
#     runs each into a fresh prefix or repository, taking turns at going first (a
#     fresh Garage is slower at its first writes); the last of each serves the rest;
#  2. `fvfsd recover --from-s3` of that store (one version), then with 100 versions;
#  3. restore of the whole tree from the bucket alone: recover + `fvfsd export`, versus
#     `restic restore latest` (both into an empty folder), with GETs per GiB restored;
#  4. a `restic restore --include` of the largest folder of large files versus fvfs
#     (recover, then export of that folder), taking turns at going first;
#  5. the largest file read cold from S3 through a daemon (`fvfsc cat`), in MB/s.
#  6. `tar` of the whole tree through a fresh `fvfsc mount` of a recovered store (every
#     chunk cold in S3), versus `restic restore`.
#  7. the whole restore of 3 again right after the machine wrote BUSY_GB (default 4)
#     GiB it has not yet written back (no sync, page cache not dropped), taking turns
#     at going first: a restore from a busy disk.
# Every restore writes into a file system of its own, made for it (ext4 on a sparse loop
# file, as root with mkfs.ext4; else a plain folder): a file system that has just
# deleted the previous restore makes the next one pay for it (ext4's inode allocator
# steps around recently freed inodes), whichever tool comes next.
# Usage: benches/scripts/bench-restore.sh [DIR]. Medians of REPS (default 3) runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/scripts/common.sh
source benches/scripts/common.sh
for t in restic fusermount3; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install restic fuse3" >&2; exit 2; }
done
build_bins fvfsd fvfsc fvfs-garage
"$bin/fvfs-garage" install
src="$(realpath "${1:-$(rustc --print sysroot)}")"
reps="${REPS:-3}"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-restorebench.XXXXXX")"
cleanup() {
  for m in "$work"/mnt*; do fusermount3 -uz "$m" 2>/dev/null || true; done
  for m in "$work"/*.img; do umount "${m%.img}" 2>/dev/null || true; done
  pkill -f "$work/" 2>/dev/null || true
  "$bin/fvfs-garage" stop "$work/garage" || true
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck disable=SC1090
source "$("$bin/fvfs-garage" start "$work/garage")"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="s3:$FVFS_S3_ENDPOINT/$FVFS_S3_BUCKET/restic"
export FVFS_PASSPHRASE=bench-passphrase

since() { echo "$(now) - $1" | bc; }
serve() { # HOME [CONFIG] -> prints the URL once listening
  "$bin/fvfsd" --config "${2:-$work/c.toml}" --home "$1" serve --listen 127.0.0.1:0 --no-mdns >"$1.out" 2>"$1.err" &
  for _ in $(seq 1 200); do
    url=$(sed -n 's/^fvfsd: listening on //p' "$1.out" 2>/dev/null)
    [ -n "$url" ] && { echo "$url"; return; }
    sleep 0.05
  done
  echo "fvfsd did not start: $(cat "$1.err")" >&2; exit 1
}
stop() { pkill -TERM -f "home $1 serve" || true; while pgrep -f "home $1 serve" >/dev/null; do sleep 0.1; done; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
fresh() { # DIR: made empty, on a new file system where one can be made
  mkdir -p "$1"
  if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
    truncate -s $((bytes * 3 + (1 << 30))) "$1.img"
    mkfs.ext4 -q -F "$1.img" && mount -o loop "$1.img" "$1"
  fi
}
unfresh() { umount "$1" 2>/dev/null || true; rm -rf "$1" "$1.img"; }
fvfsd() { "$bin/fvfsd" --config "$work/c.toml" "$@"; }
recover() { rm -rf "$1"; fvfsd --home "$1" recover --from-s3 "${@:2}" >"$1.recover" 2>&1; }

conf() { # PREFIX -> the config of a store in the bucket under PREFIX
  cat <<CONF
[tiers.s3]
bucket = "$FVFS_S3_BUCKET"
endpoint = "$FVFS_S3_ENDPOINT"
region = "garage"
prefix = "$1"
CONF
}
conf fvfs >"$work/c.toml"
find "$src" -type f -exec cat {} + >/dev/null  # warm the page cache
bytes=$(du -sb --apparent-size "$src" | cut -f1)
gib=$(echo "scale=4; $bytes / 1073741824" | bc)
big=$(find "$src" -type f -printf '%s %P\n' | sort -n | tail -1 | cut -d' ' -f2-)
big_size=$(stat -c %s "$src/$big")
bigdir=$(dirname "$big")

# 1. Durable in the bucket (the last run of each then serves every restore below).
fv_dur=(); rs_dur=()
fv_durable_run() { # REP
  local home="$work/h" prefix=fvfs
  [ "$1" -lt "$reps" ] && { home="$work/hd$1"; prefix="fvfs-durable$1"; }
  conf "$prefix" >"$home.toml"
  local url t0; url=$(serve "$home" "$home.toml")
  t0=$(now)
  "$bin/fvfsd" --config "$home.toml" --home "$home" migrate --local-src "$src" >"$home.err.migrate" 2>&1 \
    || { echo "migrate failed ($?):" >&2; tail -n 5 "$home.err.migrate" >&2; exit 1; }
  curl -sf -XPOST -H "X-Fvfs-Client: bench" "$url/v1/admin/flush" >/dev/null
  fv_dur+=("$(since "$t0")")
  stop "$home"
  [ "$1" -lt "$reps" ] && rm -rf "$home"
  return 0
}
rs_durable_run() { # REP
  local repo=$RESTIC_REPOSITORY t0
  [ "$1" -lt "$reps" ] && repo="$RESTIC_REPOSITORY-durable$1"
  RESTIC_REPOSITORY=$repo restic init >/dev/null 2>&1
  t0=$(now); RESTIC_REPOSITORY=$repo restic backup -q "$src" >/dev/null 2>&1; rs_dur+=("$(since "$t0")")
}
for r in $(seq 1 "$reps"); do
  if [ $((r % 2)) -eq 1 ]; then fv_durable_run "$r"; rs_durable_run "$r"; else rs_durable_run "$r"; fv_durable_run "$r"; fi
  echo "rep $r: durable in the bucket ${fv_dur[-1]} s, restic backup ${rs_dur[-1]} s" >&2
done

rs_folder() { # REP
  fresh "$work/rsd$1"; drop_caches; local t0; t0=$(now)
  restic restore latest --target "$work/rsd$1" --include "$src/$bigdir" >/dev/null 2>&1
  rs_dir+=("$(since "$t0")"); unfresh "$work/rsd$1"
}
fv_folder() { # REP
  fresh "$work/outd$1"; drop_caches; local t0; t0=$(now); recover "$work/d$1"
  fvfsd --home "$work/d$1" export "/$bigdir" "$work/outd$1" >/dev/null 2>&1
  fv_dir+=("$(since "$t0")"); unfresh "$work/outd$1"
}

# 2-5, repeated.
rec1=(); exp=(); gets=(); rs_all=(); rs_dir=(); fv_dir=(); cat_mbs=(); mount_tar=()
for r in $(seq 1 "$reps"); do
  fresh "$work/out$r"; drop_caches
  t0=$(now); recover "$work/r$r"; rec1+=("$(since "$t0")")
  t0=$(now)
  fvfsd --home "$work/r$r" export / "$work/out$r" >"$work/exp$r.out" 2>&1
  exp+=("$(echo "$(since "$t0") + ${rec1[-1]}" | bc)")
  gets+=("$(sed -n 's/.*S3: \([0-9]*\) GETs.*/\1/p' "$work/exp$r.out")")
  unfresh "$work/out$r"
  fresh "$work/rs$r"; drop_caches
  t0=$(now); restic restore latest --target "$work/rs$r" >/dev/null 2>&1; rs_all+=("$(since "$t0")")
  unfresh "$work/rs$r"
  # The folder: taking turns at going first, each after the previous restores' writes
  # are on disk (whichever came after them paid for those).
  if [ $((r % 2)) -eq 1 ]; then rs_folder "$r"; fv_folder "$r"; else fv_folder "$r"; rs_folder "$r"; fi
  # Cold read of the largest file through a daemon on a store holding no content.
  recover "$work/c$r"
  url=$(serve "$work/c$r")
  t0=$(now); FVFS_URL=$url "$bin/fvfsc" cat "/$big" >/dev/null; t=$(since "$t0")
  cat_mbs+=("$(echo "$big_size / $t / 1000000" | bc -l)")
  # tar through a fresh mount of the same cold store (this daemon).
  mkdir -p "$work/mnt$r"
  FVFS_URL=$url "$bin/fvfsc" mount "$work/mnt$r" --cache-dir "$work/cache$r" --cache-size 20G >/dev/null 2>&1 &
  for _ in $(seq 1 600); do mountpoint -q "$work/mnt$r" && break; sleep 0.05; done
  t0=$(now); tar -cf - -C "$work/mnt$r" . | cat >/dev/null; mount_tar+=("$(since "$t0")")
  fusermount3 -u "$work/mnt$r"; stop "$work/c$r"
  echo "rep $r: recover ${rec1[-1]} s, restore ${exp[-1]} s ($(cat "$work/exp$r.out")), restic ${rs_all[-1]} s," \
    "folder ${fv_dir[-1]} / ${rs_dir[-1]} s, cat ${cat_mbs[-1]} MB/s, mount tar ${mount_tar[-1]} s" >&2
  rm -rf "$work/r$r" "$work/d$r" "$work/c$r" "$work/cache$r"
done

# 7. Right after the machine wrote BUSY_GB GiB (the page cache holds them, the disk
# writes them back during the restore).
busy() { dd if=/dev/urandom of="$work/busy" bs=1M count=$((${BUSY_GB:-4} * 1024)) status=none; }
fv_busy=(); rs_busy=()
fv_busy_run() { # REP
  fresh "$work/outb$1"; busy; local t0; t0=$(now); recover "$work/b$1"
  fvfsd --home "$work/b$1" export / "$work/outb$1" >/dev/null 2>&1
  fv_busy+=("$(since "$t0")"); unfresh "$work/outb$1"; rm -rf "$work/b$1" "$work/busy"
}
rs_busy_run() { # REP
  fresh "$work/rsb$1"; busy; local t0; t0=$(now)
  restic restore latest --target "$work/rsb$1" >/dev/null 2>&1
  rs_busy+=("$(since "$t0")"); unfresh "$work/rsb$1"; rm -f "$work/busy"
}
for r in $(seq 1 "$reps"); do
  drop_caches
  if [ $((r % 2)) -eq 1 ]; then fv_busy_run "$r"; drop_caches; rs_busy_run "$r"
  else rs_busy_run "$r"; drop_caches; fv_busy_run "$r"; fi
  echo "rep $r: restore after ${BUSY_GB:-4} GiB written ${fv_busy[-1]} s, restic ${rs_busy[-1]} s" >&2
done

# 2b. A hundred versions: 99 small changes on top, then recover.
url=$(serve "$work/h")
for i in $(seq 1 99); do echo "$i" | FVFS_URL=$url "$bin/fvfsc" put "/versions/$i" >/dev/null; done
curl -sf -XPOST -H "X-Fvfs-Client: bench" "$url/v1/admin/flush" >/dev/null
stop "$work/h"
rec100=()
for r in $(seq 1 "$reps"); do
  drop_caches; t0=$(now); recover "$work/v$r"; rec100+=("$(since "$t0")"); rm -rf "$work/v$r"
done

m() { printf '%s\n' "$@" | median; }
fv_durable=$(m "${fv_dur[@]}"); rs_durable=$(m "${rs_dur[@]}")
rec1m=$(m "${rec1[@]}"); expm=$(m "${exp[@]}"); getsm=$(m "${gets[@]}"); rsm=$(m "${rs_all[@]}")
rsdm=$(m "${rs_dir[@]}"); fvdm=$(m "${fv_dir[@]}"); catm=$(m "${cat_mbs[@]}"); tarm=$(m "${mount_tar[@]}")
rec100m=$(m "${rec100[@]}"); fvbm=$(m "${fv_busy[@]}"); rsbm=$(m "${rs_busy[@]}")
echo "| measure ($(basename "$src"), $gib GiB; medians of $reps) | fvfs | restic | ratio |"
echo "|---|---|---|---|"
printf '| durable in the bucket (migrate + flush; restic backup) | %.2f s | %.2f s | restic/fvfs %.2fx |\n' "$fv_durable" "$rs_durable" "$(echo "$rs_durable / $fv_durable" | bc -l)"
printf '| recover --from-s3, one version | %.2f s | | |\n' "$rec1m"
printf '| recover --from-s3, 100 versions | %.2f s | | |\n' "$rec100m"
printf '| whole tree from the bucket alone (recover + export; restic restore) | %.2f s | %.2f s | restic/fvfs %.2fx |\n' "$expm" "$rsm" "$(echo "$rsm / $expm" | bc -l)"
printf '| GETs per GiB restored (export) | %.1f | | |\n' "$(echo "$getsm / $gib" | bc -l)"
printf '| whole tree, right after %s GiB written (not yet on disk) | %.2f s | %.2f s | restic/fvfs %.2fx |\n' "${BUSY_GB:-4}" "$fvbm" "$rsbm" "$(echo "$rsbm / $fvbm" | bc -l)"
printf '| folder %s (recover + export; restore --include) | %.2f s | %.2f s | restic/fvfs %.2fx |\n' "$bigdir" "$fvdm" "$rsdm" "$(echo "$rsdm / $fvdm" | bc -l)"
printf '| %s (%s bytes) read cold from S3 through the daemon | %.0f MB/s | | |\n' "$big" "$big_size" "$catm"
printf '| tar of the tree through a fresh mount of a cold store vs restic restore | %.2f s | %.2f s | fvfs/restic %.2fx |\n' "$tarm" "$rsm" "$(echo "$tarm / $rsm" | bc -l)"
