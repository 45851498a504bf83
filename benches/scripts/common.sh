# Sourced by the bench scripts (from the repository root): the build cache outside the
# clone, the binaries, and the timing helpers they share.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fvfs/target}"

# build_bins BIN...: builds them (PROFILE=release by default; PROFILE=debug reuses the
# test build) and sets $bin to the folder holding them.
build_bins() {
  local profile="${PROFILE:-release}" args=()
  for b in "$@"; do args+=(--bin "$b"); done
  if [ "$profile" = release ]; then
    cargo build --release --locked "${args[@]}" >&2
  else
    cargo build --locked "${args[@]}" >&2
  fi
  bin="$CARGO_TARGET_DIR/$profile"
}

# stored DIR: the bytes DIR takes on the disk, allocated rather than apparent (fjall's
# journal is a sparse 32 MiB file, compaction punches holes in packs, and a small file
# takes a whole block): what a repository costs its owner.
stored() { du -s --block-size=1 "$1" | cut -f1; }
now() { date +%s.%N; }
# elapsed CMD...: seconds CMD took (its output discarded).
elapsed() { local t0; t0=$(now); "$@" >/dev/null 2>&1; echo "$(now) - $t0" | bc; }
# tar_of DIR: reads every file below DIR as tar would archive it.
tar_of() { tar -cf - -C "$1" . | cat >/dev/null; }
# wait_mounted DIR: until DIR is a mount point (30 s at most).
wait_mounted() { for _ in $(seq 1 600); do mountpoint -q "$1" && return; sleep 0.05; done; echo "no mount at $1" >&2; exit 1; }
# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# serve BINDIR HOME: starts `fvfsd serve` of BINDIR on HOME on a free loopback port (its
# pid appended to the caller's `pids`); sets url.
serve() {
  FVFS_HOME="$2" "$1/fvfsd" serve --no-mdns --listen 127.0.0.1:0 >"$2.out" 2>"$2.err" &
  pids+=($!)
  until grep -q "listening on" "$2.out" 2>/dev/null; do sleep 0.05; done
  url=$(sed -n 's/^fvfsd: listening on //p' "$2.out")
}
