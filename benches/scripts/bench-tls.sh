#!/usr/bin/env bash
# fvfsc cat over HTTPS (pinned certificate) against plain HTTP, side by side in one run:
# one daemon listening everywhere, a file of SIZE_MB (default 1024) random bytes, REPS
# (default 5) cats of each to /dev/null, alternating; prints the medians and the ratio.
# Also curl's streamed GET of the same file both ways, to separate the transport from
# fvfsc's verification. Run from the repository root; PROFILE=debug reuses the test build.
set -euo pipefail
. "$(dirname "$0")/common.sh"
build_bins fvfsd fvfsc
size_mb="${SIZE_MB:-1024}" reps="${REPS:-5}"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

port=$((20000 + RANDOM % 20000))
FVFS_HOME="$work/home" "$bin/fvfsd" serve --no-mdns --listen "0.0.0.0:$port" >"$work/home.out" 2>"$work/home.err" &
pids+=($!)
until grep -q "certificate" "$work/home.out" 2>/dev/null; do sleep 0.05; done
fp=$(sed -n 's/.*certificate \(sha256:[0-9a-f]*\).*/\1/p' "$work/home.out")
token=$(FVFS_HOME="$work/home" "$bin/fvfsd" token)
head -c "$((size_mb << 20))" /dev/urandom >"$work/big.bin"
export FVFS_TOKEN="$token"
FVFS_URL="http://127.0.0.1:$port" "$bin/fvfsc" put /big.bin --from "$work/big.bin" >/dev/null
rm "$work/big.bin"

run() { # run LABEL CMD...: seconds of one run
  local t0; t0=$(now); "${@:2}" >/dev/null; echo "$(now) - $t0" | bc
}
for _ in $(seq 1 "$reps"); do
  run plain env FVFS_URL="http://127.0.0.1:$port" "$bin/fvfsc" cat /big.bin >>"$work/plain"
  run tls env FVFS_URL="https://127.0.0.1:$port" FVFS_FINGERPRINT="$fp" "$bin/fvfsc" cat /big.bin >>"$work/tls"
  run curl-plain curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/files/big.bin" >>"$work/curl-plain"
  run curl-tls curl -sfk -H "Authorization: Bearer $token" "https://127.0.0.1:$port/v1/files/big.bin" >>"$work/curl-tls"
done
for k in plain tls curl-plain curl-tls; do
  m=$(median <"$work/$k")
  printf '%-11s median %6.2f s  %7.0f MB/s  (runs: %s)\n' "$k" "$m" "$(echo "$size_mb * 1.048576 / $m" | bc -l)" "$(tr '\n' ' ' <"$work/$k")"
done
printf 'fvfsc cat TLS/plain time ratio: %.3f\n' "$(echo "$(median <"$work/tls") / $(median <"$work/plain")" | bc -l)"
printf 'curl GET  TLS/plain time ratio: %.3f\n' "$(echo "$(median <"$work/curl-tls") / $(median <"$work/curl-plain")" | bc -l)"
