#!/usr/bin/env bash
# Writing through `fvfsc mount` side by side with bindfs (a passthrough FUSE mount of an
# empty folder on the same disk), in one run:
#  - untar of the first 2,000 files of the Rust docs (share/doc of the sysroot), and of
#    the whole share/doc;
#  - cp -r and rsync -a of 10,000 small generated files (1-8 KiB, folders of 100);
#  - git clone (--no-local: a pack, then a checkout) of a repository of those files;
#  - git init, add and commit of the tree cp -r wrote (10,000 loose objects, each a
#    temporary file linked to its name and unlinked);
#  - rm -rf of that tree (10,000 files in 100 folders, and .git);
#  - one 1 GiB file written with dd bs=1M (from a file in the page cache).
# For fvfs, the time of the command (close() returns once a file is journaled in the
# mount's cache) and the time until everything it wrote is committed on the daemon (the
# command, then fsync of the mount's root); and the versions each made.
# Needs bindfs, rsync, git (Debian packages). Medians of REPS (default 3) runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/scripts/common.sh
source benches/scripts/common.sh
for t in bindfs rsync git fusermount3 python3; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install bindfs rsync git fuse3" >&2; exit 2; }
done
build_bins fvfsd fvfsc
docs="$(realpath "${1:-$(rustc --print sysroot)/share/doc}")"
reps="${REPS:-3}"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-writebench.XXXXXX")"
pids=()
cleanup() {
  for m in "$work"/mnt*; do fusermount3 -uz "$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The inputs, in the page cache before the first run.
(cd "$docs" && find . -type f | sort >"$work/docs.list")
sed -n 1,2000p "$work/docs.list" >"$work/docs2k.list"
tar -cf "$work/docs2k.tar" -C "$docs" -T "$work/docs2k.list"
tar -cf "$work/docs.tar" -C "$docs" .
python3 - "$work/small" <<'EOF'
import os, random, sys
random.seed(7)
root = sys.argv[1]
for i in range(10000):
    d = os.path.join(root, f"d{i // 100:03}")
    os.makedirs(d, exist_ok=True)
    n = random.randint(1024, 8192)
    body = (f"file {i}\n" * (n // 8 + 1))[: n // 2].encode() + random.randbytes(n - n // 2)
    with open(os.path.join(d, f"f{i:05}.txt"), "wb") as f:
        f.write(body)
EOF
# The repository git clone reads, kept beside the files (cp -r copies no .git).
small_git=(git --git-dir="$work/small.git" --work-tree="$work/small")
"${small_git[@]}" init -q && "${small_git[@]}" add -A \
  && "${small_git[@]}" -c user.email=b@x -c user.name=b commit -qm small
head -c 1G /dev/urandom >"$work/big.bin"
cat "$work"/*.tar "$work/big.bin" >/dev/null

serve "$bin" "$work/home"
export FVFS_URL="$url"
mkdir -p "$work/mnt-fvfs" "$work/mnt-bind" "$work/under-bind"
"$bin/fvfsc" mount "$work/mnt-fvfs" --cache-dir "$work/cache" --cache-size 20G >/dev/null 2>"$work/mount.err" &
pids+=($!)
wait_mounted "$work/mnt-fvfs"
bindfs "$work/under-bind" "$work/mnt-bind"

head_version() { "$bin/fvfsc" log -n 1 --json | python3 -c 'import json,sys; j = json.load(sys.stdin); print(j[0]["number"] if j else 0)'; }
sync_root() { sync "$work/mnt-fvfs"; }
# Each workload writes into a new folder DEST of the mount under test.
w_docs2k() { mkdir "$1" && tar -xf "$work/docs2k.tar" -C "$1"; }
w_docs() { mkdir "$1" && tar -xf "$work/docs.tar" -C "$1"; }
w_cp() { cp -r "$work/small" "$1"; }
w_rsync() { rsync -a --exclude .git "$work/small/" "$1"; }
w_clone() { git clone -q --no-local "$work/small.git" "$1"; }
w_dd() { mkdir "$1" && dd if="$work/big.bin" of="$1/big.bin" bs=1M status=none; }
w_gitadd() { # the tree of this run's cp -r
  git -C "$(dirname "$1")/cp-${1##*-}" init -q \
    && git -C "$(dirname "$1")/cp-${1##*-}" add -A \
    && git -C "$(dirname "$1")/cp-${1##*-}" -c user.email=b@x -c user.name=b commit -qm small
}
w_rm() { rm -rf "$(dirname "$1")/cp-${1##*-}"; } # the tree of this run's cp -r

declare -A fv fs bd vs
for r in $(seq 1 "$reps"); do
  for w in docs2k docs cp rsync clone dd gitadd rm; do
    bd[$w]+="$(elapsed "w_$w" "$work/mnt-bind/$w-$r") "
    before=$(head_version)
    t0=$(now)
    "w_$w" "$work/mnt-fvfs/$w-$r" >/dev/null 2>&1
    t1=$(now)
    sync_root
    t2=$(now)
    fv[$w]+="$(echo "$t1 - $t0" | bc) "
    fs[$w]+="$(echo "$t2 - $t0" | bc) "
    vs[$w]+="$(( $(head_version) - before )) "
    sync  # bindfs's writes leave the page cache before the next run, not during it
  done
done
m() { printf '%s\n' $1 | median; }
echo "samples (s): $(for w in "${!fv[@]}"; do echo -n "$w: fvfs ${fv[$w]}/ synced ${fs[$w]}/ bindfs ${bd[$w]}; "; done)" >&2
echo "| workload | fvfs (command) | fvfs (committed) | bindfs | fvfs/bindfs | versions made |"
echo "|---|---|---|---|---|---|"
row() { # NAME W
  local f s b
  f=$(m "${fv[$2]}"); s=$(m "${fs[$2]}"); b=$(m "${bd[$2]}")
  printf '| %s | %.2f s | %.2f s | %.2f s | %.2fx (committed %.2fx) | %s |\n' "$1" "$f" "$s" "$b" \
    "$(echo "$f / $b" | bc -l)" "$(echo "$s / $b" | bc -l)" "$(m "${vs[$2]}")"
}
row "untar 2,000 files of the Rust docs ($(du -sh "$work/docs2k.tar" | cut -f1))" docs2k
row "untar share/doc ($(tar -tf "$work/docs.tar" | grep -vc '/$') entries, $(du -sh "$work/docs.tar" | cut -f1))" docs
row "cp -r of 10,000 small files" cp
row "rsync -a of 10,000 small files" rsync
row "git clone --no-local of 10,000 files" clone
row "git init, add -A, commit of the 10,000 files cp -r wrote" gitadd
row "rm -rf of them (and .git)" rm
f=$(m "${fv[dd]}"); s=$(m "${fs[dd]}"); b=$(m "${bd[dd]}")
printf '| dd bs=1M of 1 GiB | %.0f MB/s | %.0f MB/s | %.0f MB/s | %.2fx of bindfs MB/s | %s |\n' \
  "$(echo "1073.741824 / $f" | bc -l)" "$(echo "1073.741824 / $s" | bc -l)" "$(echo "1073.741824 / $b" | bc -l)" \
  "$(echo "$b / $f" | bc -l)" "$(m "${vs[dd]}")"
