#!/usr/bin/env bash
# The web page's first screen on a store of 1,000 versions (default; VERSIONS=N): the
# time from navigation to the first view drawn (`window.fvfsFirstScreenMs`, measured by
# the page itself against the navigation's start) in headless Chromium, first load and
# the median of REPS (default 7) reloads; then the same for the Versions and Status
# views, and the API answers behind them with curl. Needs chromium, chromium-driver.
# Run from the repository root; PROFILE=debug reuses the test build.
set -euo pipefail
. "$(dirname "$0")/common.sh"
command -v chromedriver >/dev/null || { echo "missing chromium-driver" >&2; exit 2; }
build_bins fvfsd fvfsc
versions="${VERSIONS:-1000}"
reps="${REPS:-7}"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-webbench.XXXXXX")"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

src="$(rustc --print sysroot)/share/doc"
"$bin/fvfsd" --home "$work/home" migrate --local-src "$src" --dest /doc >/dev/null 2>&1
serve "$bin" "$work/home"
made=$(curl -s "$url/v1/versions?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["number"])')
for i in $(seq "$made" "$((versions - 1))"); do
  printf 'note %s\n' "$i" | curl -s -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary @- "$url/v1/files/notes/n$((i % 50)).txt"
done
echo "store: $(curl -s "$url/v1/status" | python3 -c 'import json,sys; s=json.load(sys.stdin)["store"]; print(s["versions"], "versions,", s["logical_bytes"], "bytes")')"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chromedriver --port="$port" >/dev/null 2>&1 &
pids+=($!)
URL="$url" DRIVER="http://127.0.0.1:$port" REPS="$reps" python3 - <<'PY'
import json, os, statistics, time, urllib.request

driver, url, reps = os.environ["DRIVER"], os.environ["URL"], int(os.environ["REPS"])

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(driver + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))["value"]

for _ in range(200):
    try:
        call("GET", "/status"); break
    except OSError:
        time.sleep(0.05)
sid = call("POST", "/session", {"capabilities": {"alwaysMatch": {"browserName": "chrome",
      "goog:chromeOptions": {"binary": "/usr/bin/chromium",
      "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]}}}})["sessionId"]
s = f"/session/{sid}"

def screen(hash):
    # From a blank page, so that each load is a whole navigation (not a hash change).
    call("POST", s + "/url", {"url": "about:blank"})
    call("POST", s + "/url", {"url": f"{url}/{hash}"})
    while not call("POST", s + "/execute/sync", {"script": "return document.body.dataset.ready === '1'", "args": []}):
        time.sleep(0.005)
    return call("POST", s + "/execute/sync", {"script": "return window.fvfsFirstScreenMs", "args": []})

for name, hash in [("files (first screen)", ""), ("versions", "#/versions"), ("status", "#/status")]:
    first = screen(hash)
    times = [screen(hash) for _ in range(reps)]
    print(f"{name}: first load {first:.0f} ms, median of {reps} {statistics.median(times):.0f} ms")
call("DELETE", s)
PY
for route in /v1/whoami /v1/ls/ /v1/snapshots "/v1/versions?limit=100" /v1/status /v1/status/history; do
  t=()
  for _ in $(seq 1 "$reps"); do t+=("$(curl -s -o /dev/null -w '%{time_total}' "$url$route")"); done
  echo "GET $route: median $(printf '%s\n' "${t[@]}" | median | awk '{printf "%.1f", $1*1000}') ms"
done
