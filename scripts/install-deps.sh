#!/usr/bin/env bash
# Installs the system tools the test suite needs, where they are missing (Debian/Ubuntu).
# Idempotent: on a machine that has them, it installs nothing.
set -euo pipefail

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need setpriv util-linux   # runs a migration as an unprivileged user (unreadable files)
need mount mount          # tmpfs data dirs for the full-disk test
need umount mount
need gcc gcc              # zstd-sys builds C
need ip iproute2          # network namespaces for the mDNS test
need fusermount3 fuse3    # fvfsc umount; FUSE mounts in tests
need rsync rsync          # programs run on the mount in tests
need sqlite3 sqlite3
need git git
need python3 python3      # peak memory of commands in the scale test (getrusage)
need tar tar
need litmus litmus        # the WebDAV conformance suite, against /dav/
need mount.davfs davfs2   # a real WebDAV client mounting /dav/
need chromium chromium    # a real browser on the web page
need chromedriver chromium-driver
# A font for the page's screenshots (chromium runs without one, showing boxes).
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
