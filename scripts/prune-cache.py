#!/usr/bin/env python3
"""Keep the shared build cache ($CARGO_TARGET_DIR) from filling the disk.

CI reuses one target folder across runs, and cargo never deletes anything from it: every
change of a dependency or of a feature set gives fvfs's own crates a new hash, so a new
copy of each binary (hundreds of MB for fvfsd with debug info) and a new incremental
session land beside the old ones. Left alone the folder grew past 70 GB and a run died
with "No space left on device".

What this removes, and only this: for fvfs's own targets (the workspace's packages and
their binaries, tests and benches), every artifact in `deps/` and every incremental
session in `incremental/` that is more than two hours older than the newest one of the
same name. One CI run rebuilds all the variants of a crate it uses within minutes of each
other, so what is removed is what no current build reads. Removing a file cargo still
wanted costs a rebuild of that crate, never a wrong result: cargo rebuilds any output it
cannot find. Third-party crates are left alone (they change rarely and rebuild slowly).
"""
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

SLACK_SECS = 2 * 3600
HASHED = re.compile(r"^(?:lib)?(?P<stem>[A-Za-z0-9_]+)-[0-9a-z]{13,16}(?:\..*)?$")


def workspace_names():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    names = set()
    for package in meta["packages"]:
        names.add(package["name"].replace("-", "_"))
        for target in package["targets"]:
            names.add(target["name"].replace("-", "_"))
    return names


def prune(folder, names):
    """Removes entries of `folder` older than the newest of their name by more than the slack."""
    groups = defaultdict(list)
    for entry in os.scandir(folder):
        found = HASHED.match(entry.name)
        if found and found.group("stem") in names:
            groups[found.group("stem")].append((entry.stat(follow_symlinks=False).st_mtime, entry))
    freed = 0
    for entries in groups.values():
        newest = max(mtime for mtime, _ in entries)
        for mtime, entry in entries:
            if mtime >= newest - SLACK_SECS:
                continue
            if entry.is_dir(follow_symlinks=False):
                freed += sum(
                    os.path.getsize(os.path.join(root, f))
                    for root, _, files in os.walk(entry.path)
                    for f in files
                )
                shutil.rmtree(entry.path)
            else:
                freed += entry.stat(follow_symlinks=False).st_size
                os.remove(entry.path)
    return freed


def main():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(os.getcwd(), "target")
    names = workspace_names()
    freed = 0
    for profile in ("debug", "release"):
        for sub in ("deps", "incremental"):
            folder = os.path.join(target, profile, sub)
            if os.path.isdir(folder):
                freed += prune(folder, names)
    print(f"prune-cache: freed {freed / 1e9:.1f} GB in {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
