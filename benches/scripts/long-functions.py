#!/usr/bin/env python3
"""Functions longer than a limit (issue 48, item 5: at most three over 100 lines).

Counts, in every `.rs` file of the workspace outside `tests/` folders, `tests.rs` files
and `#[cfg(test)]` modules, each `fn` from its signature's first line to the line of
its closing brace (rustfmt's layout: the brace at the signature's indentation), and
prints those over the limit, longest first, then the largest files.
Usage: long-functions.py [LIMIT] (default 100)
"""
import re
import sys
from pathlib import Path

LIMIT = int(sys.argv[1]) if len(sys.argv) > 1 else 100
ROOT = Path(__file__).resolve().parents[2]
FN = re.compile(r"^(\s*)(pub(\([a-z:]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def files():
    for p in sorted(ROOT.rglob("*.rs")):
        rel = p.relative_to(ROOT)
        if "target" in rel.parts or "tests" in rel.parts or p.name == "tests.rs":
            continue
        yield rel, p.read_text().split("\n")


def functions(lines):
    test_indent = None
    for i, line in enumerate(lines):
        if test_indent is not None:
            if line.startswith(test_indent + "}"):
                test_indent = None
            continue
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and "mod " in lines[i + 1]:
            test_indent = re.match(r"\s*", lines[i + 1]).group(0)
            continue
        m = FN.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        indent = m.group(1)
        for j in range(i, len(lines)):
            if lines[j] == indent + "}" or (j == i and line.rstrip().endswith("}")):
                yield m.group(7), i + 1, j - i + 1
                break


long, sizes = [], []
for rel, lines in files():
    sizes.append((len(lines) - 1, str(rel)))
    for name, at, n in functions(lines):
        if n > LIMIT:
            long.append((n, f"{rel}:{at}", name))
print(f"functions over {LIMIT} lines: {len(long)}")
for n, where, name in sorted(long, reverse=True):
    print(f"  {n:4} {name} ({where})")
print("largest files:")
for n, name in sorted(sizes, reverse=True)[:5]:
    print(f"  {n:4} {name}")
