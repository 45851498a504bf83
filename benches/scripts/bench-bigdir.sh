#!/usr/bin/env bash
# A commit into a huge directory: fills /big with N empty files through the API
# (commits of 50,000 ops), then times `fvfsc put` of one small file into it (median of
# REPS runs) and counts what the daemon wrote for that put (/proc/PID/io write_bytes)
# and how many stored bytes it added. With BEFORE=DIR, runs the same side by side with
# the fvfsd and fvfsc found in DIR (an older build) and prints the ratios.
#
# Usage: [N=1000000] [REPS=5] [BEFORE=DIR] benches/scripts/bench-bigdir.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/scripts/common.sh
N="${N:-1000000}"
REPS="${REPS:-5}"
build_bins fvfsd fvfsc
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-bench.XXXXXX")"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

# one LABEL BINDIR: prints "LABEL: median put ms, write bytes per put, stored bytes per put".
one() {
  local label=$1 dir=$2 home="$work/$1"
  serve "$dir" "$home"
  local pid=${pids[-1]}
  python3 - "$url" "$N" <<'PY' || { echo "$label: filling /big failed (see $home.err)"; return; }
import json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
step = 50_000
for start in range(0, n, step):
    ops = [{"op": "file", "path": f"/big/f{i:08d}", "mode": 0o644, "mtime_ns": 0, "size": 0}
           for i in range(start, min(n, start + step))]
    body = json.dumps({"message": "fill", "ops": ops}).encode()
    req = urllib.request.Request(url + "/v1/commit", body, {"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=3600).read()
PY
  stored() { FVFS_URL=$url "$dir/fvfsc" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["stored_bytes"])'; }
  written() { awk '/^write_bytes/ {print $2}' "/proc/$pid/io"; }
  local ms=() wb=() sb=()
  for i in $(seq "$REPS"); do
    local s0 w0 a b
    s0=$(stored); w0=$(written)
    a=$(date +%s%N)
    echo "small file $i" | FVFS_URL=$url "$dir/fvfsc" put "/big/new-$i" >/dev/null
    b=$(date +%s%N)
    ms+=($(( (b - a) / 1000000 )))
    wb+=($(( $(written) - w0 )))
    sb+=($(( $(stored) - s0 )))
  done
  printf '%s: put into a %d-entry directory: median %s ms, daemon wrote %s bytes, stored +%s bytes (medians of %d)\n' \
    "$label" "$N" "$(printf '%s\n' "${ms[@]}" | median)" "$(printf '%s\n' "${wb[@]}" | median)" \
    "$(printf '%s\n' "${sb[@]}" | median)" "$REPS"
}

one after "$bin"
if [ -n "${BEFORE:-}" ]; then
  one before "$BEFORE"
fi
