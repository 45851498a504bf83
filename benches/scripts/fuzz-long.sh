#!/usr/bin/env bash
# Long property-fuzzing run of every decoder of untrusted bytes: each suite runs over
# and over, with a fresh random seed per run (proptest draws one), until its share of
# the time is up. A failure stops the run; proptest prints the minimal input and keeps
# its seed in the suite's `proptest-regressions/`, which is committed (the corpus).
#
# Usage: HOURS=2 benches/scripts/fuzz-long.sh   (default 1 hour, split evenly)
# Suites: SUITES="decoders frames packs http" (default: all). Prints one line per suite:
# runs, cases per property per run, properties, total cases, wall time.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fvfs/target}"
hours="${HOURS:-1}"
suites=(${SUITES:-decoders frames packs http})

# name | cargo selection | test filter | cases per run | properties
declare -A select=(
  [decoders]="-p fvfs-manifest --test decoders"
  [frames]="-p fvfs-cas --lib"
  [packs]="-p fvfs-tiering --lib"
  [http]="-p fvfs-tests --test fuzz_http"
)
declare -A filter=(
  [decoders]=""
  [frames]="frame::tests::"
  [packs]="s3::pack::tests::never_panics"
  [http]=""
)
declare -A cases=([decoders]=200000 [frames]=200000 [packs]=2000000 [http]=2000)
# Only the fuzz properties: the frames' round trip and their plain unit tests are not.
declare -A skip=([frames]="round_trip compressible corrupt_frames golden")

# Release binaries, built once; the runs below execute them directly (so a build in the
# same target directory is never blocked by this script).
cargo build --release --locked --bins >&2
declare -A exe
for s in "${suites[@]}"; do
  # shellcheck disable=SC2086
  exe[$s]="$(cargo test --release --locked ${select[$s]} --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("profile", {}).get("test"):
        print(m["executable"])' | tail -1)"
done

share=$(python3 -c "print(int($hours * 3600 / ${#suites[@]}))")
for s in "${suites[@]}"; do
  start=$(date +%s)
  runs=0
  args=(--test-threads 1)
  [ -n "${filter[$s]}" ] && args+=("${filter[$s]}")
  for k in ${skip[$s]:-}; do args+=(--skip "$k"); done
  props=$("${exe[$s]}" "${args[@]}" --list 2>/dev/null | grep -c ': test$')
  while [ $(($(date +%s) - start)) -lt "$share" ]; do
    if ! PROPTEST_CASES="${cases[$s]}" "${exe[$s]}" "${args[@]}" >"/tmp/fuzz-$s.log" 2>&1; then
      echo "FAILED: $s, run $((runs + 1)); log: /tmp/fuzz-$s.log" >&2
      tail -40 "/tmp/fuzz-$s.log" >&2
      exit 1
    fi
    runs=$((runs + 1))
  done
  took=$(($(date +%s) - start))
  echo "$s: $runs runs x ${cases[$s]} cases x $props properties = $((runs * cases[$s] * props)) cases in ${took} s, no failure"
done
