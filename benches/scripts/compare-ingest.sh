#!/usr/bin/env bash
# Side by side on one real tree: fvfsd migrate vs restic backup, borg create and
# casync make: first ingest, a second version on top, a re-run on the unchanged tree,
# stored bytes (fvfs also after `gc --recompress`), peak RSS; then snapshot and rollback on a 100,000-file tree.
#
# Usage: benches/scripts/compare-ingest.sh [DIR [DIR2]]
#   DIR   a real tree (default: the Rust toolchain's sysroot, `rustc --print sysroot`)
#   DIR2  a second version of it (default: the nightly toolchain's sysroot when DIR is
#         the default and nightly is installed; else a copy of DIR in which every tenth
#         file has 100 bytes inserted in its middle and every hundredth is deleted)
# Needs restic, borg and casync (Debian packages); prints a markdown table of medians
# and ratios. The page cache is warmed before each tool so all read from memory.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fvfs/target}"
for t in restic borg casync; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install restic borgbackup casync" >&2; exit 2; }
done
cargo build --release --locked --bin fvfsd >&2
fvfsd="$CARGO_TARGET_DIR/release/fvfsd"

src="$(realpath "${1:-$(rustc --print sysroot)}")"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=bench BORG_PASSPHRASE="" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes

if [ -n "${2:-}" ]; then
  src2="$(realpath "$2")"
elif [ -z "${1:-}" ] && nightly="$(rustup run nightly rustc --print sysroot 2>/dev/null)"; then
  src2="$(realpath "$nightly")"
else
  src2="$work/v2"
  cp -a "$src" "$src2"
  python3 - "$src2" <<'PY'
import os, sys
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs
               if not os.path.islink(os.path.join(d, f)))
for i, p in enumerate(files):
    if i % 100 == 50:
        os.unlink(p)
    elif i % 10 == 0 and os.path.getsize(p) > 1024:
        with open(p, "rb") as f:
            b = f.read()
        with open(p, "wb") as f:
            f.write(b[:len(b) // 2] + os.urandom(100) + b[len(b) // 2:])
PY
fi

warm() { tar -cf - "$@" >/dev/null 2>&1 || true; }
# run NAME CMD...: time one command; sets secs, rss_mb, user and sys (CPU seconds).
run() {
  local name=$1; shift
  warm "$src" "$src2"
  /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
    echo "$name failed:" >&2; cat "$work/err" "$work/out" >&2; exit 1; }
  read -r secs rss user sys < "$work/time"
  rss_mb=$((rss / 1024))
}
mb() { echo "scale=0; $1 / 1000000" | bc; }
ratio() { echo "scale=2; $1 / $2" | bc; }

files=$(find "$src" -type f | wc -l); bytes=$(du -sb --apparent-size "$src" | cut -f1)
echo "tree: $src, $files files, $(mb "$bytes") MB; second version: $src2" >&2

declare -A first second rerun stored1 stored2 rss cpu
# fvfs
export FVFS_HOME="$work/fvfs"
run fvfs "$fvfsd" migrate --local-src "$src" --dest /tree; first[fvfs]=$secs; rss[fvfs]=$rss_mb; cpu[fvfs]="$user / $sys"
stored1[fvfs]=$(stored "$work/fvfs")
run fvfs "$fvfsd" migrate --local-src "$src" --dest /tree; rerun[fvfs]=$secs
run fvfs "$fvfsd" migrate --local-src "$src2" --dest /tree; second[fvfs]=$secs
stored2[fvfs]=$(stored "$work/fvfs")
# What an idle daemon does later: the segments' frames rewritten at the dense level.
run fvfs "$fvfsd" gc --recompress; dense_secs=$secs; dense_cpu="$user / $sys"
stored3=$(stored "$work/fvfs")
# restic
restic init -q --repository-version 2 -r "$work/restic" >/dev/null
run restic restic backup -q -r "$work/restic" "$src"; first[restic]=$secs; rss[restic]=$rss_mb; cpu[restic]="$user / $sys"
stored1[restic]=$(stored "$work/restic")
run restic restic backup -q -r "$work/restic" "$src"; rerun[restic]=$secs
run restic restic backup -q -r "$work/restic" "$src2"; second[restic]=$secs
stored2[restic]=$(stored "$work/restic")
# borg
borg init -e none "$work/borg"
run borg borg create --compression zstd,3 "$work/borg::a" "$src"; first[borg]=$secs; rss[borg]=$rss_mb; cpu[borg]="$user / $sys"
stored1[borg]=$(stored "$work/borg")
run borg borg create --compression zstd,3 "$work/borg::b" "$src"; rerun[borg]=$secs
run borg borg create --compression zstd,3 "$work/borg::c" "$src2"; second[borg]=$secs
stored2[borg]=$(stored "$work/borg")
# casync, same average chunk size as fvfs
cs=16384:65536:262144
run casync casync make --chunk-size=$cs --compression=zstd --store="$work/casync.castr" "$work/a.caidx" "$src"
first[casync]=$secs; rss[casync]=$rss_mb; cpu[casync]="$user / $sys"; stored1[casync]=$(stored "$work/casync.castr")
run casync casync make --chunk-size=$cs --compression=zstd --store="$work/casync.castr" "$work/b.caidx" "$src2"
second[casync]=$secs; stored2[casync]=$(stored "$work/casync.castr"); rerun[casync]="-"

echo
echo "| tool | first ingest | CPU user / system | MB/s | peak RSS | stored | second version on top | stored, both | re-run unchanged |"
echo "|---|---|---|---|---|---|---|---|---|"
for t in fvfs restic borg casync; do
  echo "| $t | ${first[$t]} s | ${cpu[$t]} s | $(mb "$(ratio "$bytes" "${first[$t]}")") | ${rss[$t]} MB | $(mb "${stored1[$t]}") MB | ${second[$t]} s | $(mb "${stored2[$t]}") MB | ${rerun[$t]} s |"
done
echo
echo "ratios (higher is better for fvfs):"
echo "- ingest speed vs restic: $(ratio "${first[restic]}" "${first[fvfs]}")x, vs borg: $(ratio "${first[borg]}" "${first[fvfs]}")x, vs casync: $(ratio "${first[casync]}" "${first[fvfs]}")x"
echo "- re-run vs restic: $(ratio "${rerun[restic]}" "${rerun[fvfs]}")x, vs borg: $(ratio "${rerun[borg]}" "${rerun[fvfs]}")x"
echo "- stored bytes for both versions, casync / fvfs: $(ratio "${stored2[casync]}" "${stored2[fvfs]}")"
echo "- fvfs after \`gc --recompress\` ($dense_secs s, CPU $dense_cpu s): $(mb "$stored3") MB; restic / fvfs: $(ratio "${stored2[restic]}" "$stored3"), casync / fvfs: $(ratio "${stored2[casync]}" "$stored3")"

# Snapshot and rollback on a tree of 100,000 files.
many="$work/many"
python3 - "$many" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(100_000):
    d = os.path.join(root, f"d{i // 1000}")
    if i % 1000 == 0:
        os.makedirs(d)
    with open(os.path.join(d, f"f{i}"), "w") as f:
        f.write(f"file {i}\n")
PY
export FVFS_HOME="$work/many-store"
"$fvfsd" migrate --local-src "$many" >/dev/null
"$fvfsd" migrate --local-src "$src" --dest /extra >/dev/null
ms() { local a b; a=$(date +%s%N); "$@" >/dev/null; b=$(date +%s%N); echo $(( (b - a) / 1000 )); }
snap=(); roll=()
for i in $(seq 1 15); do
  snap+=("$(ms "$fvfsd" snapshot create "s$i")")
  roll+=("$(ms "$fvfsd" rollback HEAD~1)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "- snapshot create on 100,000+ files: median $(median "${snap[@]}") us per command (process start, open, durable commit)"
echo "- rollback on 100,000+ files: median $(median "${roll[@]}") us per command"
