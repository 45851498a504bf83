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

now() { date +%s.%N; }
# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
