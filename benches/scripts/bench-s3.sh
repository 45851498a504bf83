#!/usr/bin/env bash
# The S3 tier against a private Garage 2.5.0 on loopback, side by side with restic:
#  1. time for a real tree to be fully durable in S3: `fvfsd serve` running, `fvfsd
#     migrate` (through the daemon, which uploads packs while it ingests), then
#     `POST /v1/admin/flush` (returns once packs, locations and the version log are in
#     Garage) versus `restic backup` to the same Garage; and the same for fvfs with
#     the bucket in the clear (`encrypt = false`), for the cost of encryption;
#  2. S3 requests per GiB ingested (PUTs counted by the daemon; target <= 64);
#  3. read of one large file cold from S3 (store recovered from S3, nothing local)
#     versus the same read from the local tier.
#
# Usage: benches/scripts/bench-s3.sh [DIR]   (default: the Rust sysroot)
# Prints a markdown table. Runs each side once per repetition (REPS, default 3) and
# reports medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/scripts/common.sh
source benches/scripts/common.sh
command -v restic >/dev/null || { echo "missing restic: apt-get install restic" >&2; exit 2; }
build_bins fvfsd fvfsc fvfs-garage
"$bin/fvfs-garage" install
src="$(realpath "${1:-$(rustc --print sysroot)}")"
reps="${REPS:-3}"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-s3bench.XXXXXX")"
cleanup() { pkill -f "$work/h" 2>/dev/null || true; "$bin/fvfs-garage" stop "$work/garage" || true; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck disable=SC1090
source "$("$bin/fvfs-garage" start "$work/garage")"
export RESTIC_PASSWORD=bench
export FVFS_PASSPHRASE=bench-passphrase

serve() { # HOME CONFIG -> prints the URL once listening
  "$bin/fvfsd" --config "$2" --home "$1" serve --listen 127.0.0.1:0 --no-mdns >"$1.out" 2>"$1.err" &
  for _ in $(seq 1 200); do
    url=$(sed -n 's/^fvfsd: listening on //p' "$1.out" 2>/dev/null)
    [ -n "$url" ] && { echo "$url"; return; }
    sleep 0.05
  done
  echo "fvfsd did not start: $(cat "$1.err")" >&2; exit 1
}
stop() { pkill -TERM -f "home $1 serve" || true; while pgrep -f "home $1 serve" >/dev/null; do sleep 0.1; done; }

find "$src" -type f -exec cat {} + >/dev/null  # warm the page cache
bytes=$(du -sb --apparent-size "$src" | cut -f1)
big=$(find "$src" -type f -printf '%s %P\n' | sort -n | tail -1 | cut -d' ' -f2-)
big_size=$(stat -c %s "$src/$big")

durable() { # NAME ENCRYPT -> seconds until the tree is durable in Garage
  cat >"$work/c$1.toml" <<CONF
[tiers.s3]
bucket = "$FVFS_S3_BUCKET"
endpoint = "$FVFS_S3_ENDPOINT"
region = "garage"
prefix = "fvfs-$1"
encrypt = $2
CONF
  url=$(serve "$work/h$1" "$work/c$1.toml")
  t0=$(now)
  "$bin/fvfsd" --config "$work/c$1.toml" --home "$work/h$1" migrate --local-src "$src" >/dev/null 2>&1
  curl -sf -XPOST -H "X-Fvfs-Client: bench" "$url/v1/admin/flush" >/dev/null
  t1=$(now)
  curl -sf "$url/metrics" | sed -n 's/^fvfs_s3_requests{method="PUT"} //p' >"$work/puts$1"
  stop "$work/h$1"
  echo "$t1 - $t0" | bc
}

fv=(); fc=(); rs=(); puts=()
for r in $(seq 1 "$reps"); do
  fv+=("$(durable "$r" true)")
  puts+=("$(cat "$work/puts$r")")
  fc+=("$(durable "clear$r" false)")
  export RESTIC_REPOSITORY="s3:$FVFS_S3_ENDPOINT/$FVFS_S3_BUCKET/restic-$r"
  restic init >/dev/null 2>&1
  t0=$(now); restic backup -q "$src" >/dev/null 2>&1; t1=$(now)
  rs+=("$(echo "$t1 - $t0" | bc)")
done
fvm=$(printf '%s\n' "${fv[@]}" | median); rsm=$(printf '%s\n' "${rs[@]}" | median)
fcm=$(printf '%s\n' "${fc[@]}" | median)
putm=$(printf '%s\n' "${puts[@]}" | median)
gib=$(echo "scale=3; $bytes / 1073741824" | bc)

# Cold read: a store recovered from S3 holds nothing local but tree nodes.
cold=(); warm=()
for r in $(seq 1 "$reps"); do
  rm -rf "$work/r$r"
  "$bin/fvfsd" --config "$work/c1.toml" --home "$work/r$r" recover --from-s3 >/dev/null 2>&1
  url=$(serve "$work/r$r" "$work/c1.toml")
  t0=$(now); FVFS_URL=$url "$bin/fvfsc" cat "/$big" >/dev/null; t1=$(now)
  cold+=("$(echo "$t1 - $t0" | bc)")
  t0=$(now); FVFS_URL=$url "$bin/fvfsc" cat "/$big" >/dev/null; t1=$(now)
  warm+=("$(echo "$t1 - $t0" | bc)")
  stop "$work/r$r"
done
coldm=$(printf '%s\n' "${cold[@]}" | median); warmm=$(printf '%s\n' "${warm[@]}" | median)

echo "| measure | fvfs | restic | ratio |"
echo "|---|---|---|---|"
printf '| durable in Garage (%s, %s GiB), median of %s | %.2f s | %.2f s | restic/fvfs %.2fx |\n' \
  "$(basename "$src")" "$gib" "$reps" "$fvm" "$rsm" "$(echo "$rsm / $fvm" | bc -l)"
printf '| the same, bucket in the clear (encrypt = false) | %.2f s | | encrypted/clear %.3fx |\n' \
  "$fcm" "$(echo "$fvm / $fcm" | bc -l)"
printf '| S3 PUTs for the tree (all objects: packs, version log, snapshots) | %s | | %.1f per GiB ingested |\n' \
  "$putm" "$(echo "$putm / $gib" | bc -l)"
printf '| read %s (%s bytes): cold from S3 vs local tier | %.3f s | %.3f s (local) | cold/local %.1fx |\n' \
  "$big" "$big_size" "$coldm" "$warmm" "$(echo "$coldm / $warmm" | bc -l)"
