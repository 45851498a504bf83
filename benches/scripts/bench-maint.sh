#!/usr/bin/env bash
# Maintenance side by side, on the same real tree, local repositories on the same disk:
#  1. full integrity check reading every byte: `fvfsd fsck --read-data` versus
#     `restic check --read-data` and `borg check --verify-data` (target: fvfs at least
#     5x faster than the faster of the two);
#  2. collection after dropping half the versions: VERSIONS versions of the tree (each
#     rewrites CHANGE_MB of files), then `fvfsd gc --keep-last VERSIONS/2` versus
#     `restic forget --keep-last VERSIONS/2 --prune` (target: at least 5x faster).
#
# Usage: benches/scripts/bench-maint.sh [DIR]   (default: the Rust sysroot)
# REPS (default 3) repetitions, medians printed as a markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/scripts/common.sh
source benches/scripts/common.sh
for tool in restic borg; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool: apt-get install restic borgbackup" >&2
    exit 2
  }
done
build_bins fvfsd
fvfsd="$bin/fvfsd"
src="$(realpath "${1:-$(rustc --print sysroot)}")"
reps="${REPS:-3}"
versions="${VERSIONS:-10}"
change_mb="${CHANGE_MB:-20}"
work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/fvfs-maint.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=bench BORG_PASSPHRASE="" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes

since() { echo "$(now) - $1" | bc; }

# The tree: a copy of DIR plus a directory rewritten for each version.
tree="$work/tree"
mkdir -p "$tree"
cp -a "$src/." "$tree/"
mkdir -p "$tree/changing"
new_version() { # K: rewrites CHANGE_MB of incompressible files
  for i in $(seq 1 "$change_mb"); do
    head -c 1048576 /dev/urandom >"$tree/changing/f$i"
  done
}
bytes=$(du -sb --apparent-size "$tree" | cut -f1)

fs=(); rc=(); bc=(); fg=(); rg=()
for r in $(seq 1 "$reps"); do
  home="$work/fvfs$r"
  export RESTIC_REPOSITORY="$work/restic$r"
  borg_repo="$work/borg$r"
  restic init -q >/dev/null
  borg init -e none "$borg_repo" >/dev/null 2>&1
  for k in $(seq 1 "$versions"); do
    new_version "$k"
    "$fvfsd" --home "$home" migrate --local-src "$tree" >/dev/null 2>&1
    restic backup -q "$tree" >/dev/null 2>&1
    borg create "$borg_repo::v$k" "$tree" >/dev/null 2>&1
  done
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  t=$(now); "$fvfsd" --home "$home" fsck --all --read-data >/dev/null; fs+=("$(since "$t")")
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  t=$(now); restic check -q --read-data >/dev/null 2>&1; rc+=("$(since "$t")")
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  t=$(now); borg check --verify-data "$borg_repo" >/dev/null 2>&1; bc+=("$(since "$t")")

  keep=$((versions / 2))
  t=$(now); "$fvfsd" --home "$home" gc --keep-last "$keep" --grace-secs 0 >"$work/gc$r.txt"; fg+=("$(since "$t")")
  t=$(now); restic forget -q --keep-last "$keep" --prune >/dev/null 2>&1; rg+=("$(since "$t")")
  "$fvfsd" --home "$home" fsck --all --read-data >/dev/null
  cat "$work/gc$r.txt" >&2
  rm -rf "$home" "$RESTIC_REPOSITORY" "$borg_repo"
done
m() { printf '%s\n' "$@" | median; }
fsm=$(m "${fs[@]}"); rcm=$(m "${rc[@]}"); bcm=$(m "${bc[@]}"); fgm=$(m "${fg[@]}"); rgm=$(m "${rg[@]}")
best=$(printf '%s\n%s\n' "$rcm" "$bcm" | sort -g | head -1)
ratio() { echo "scale=2; $1 / $2" | bc; }
echo "tree: $src + changing/ ($((bytes / 1048576)) MiB), $versions versions (${change_mb} MiB rewritten each), $reps reps, medians, page cache dropped before each check"
echo
echo "| step | fvfs | restic | borg | fvfs speedup (target >= 5x) |"
echo "|---|---|---|---|---|"
echo "| full check, every byte read | ${fsm} s | ${rcm} s | ${bcm} s | $(ratio "$best" "$fsm")x vs the faster |"
echo "| drop half the versions and free space | ${fgm} s | ${rgm} s | | $(ratio "$rgm" "$fgm")x |"
