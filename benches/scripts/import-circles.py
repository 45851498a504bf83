#!/usr/bin/env python3
"""Import circles between a crate's top-level modules (issue 48, item 5).

For each crate source folder given (default: every `src` of the workspace), counts
which top-level modules name which (`crate::NAME` outside comments and outside
`#[cfg(test)]` modules and `tests.rs` files) and prints the circles: the strongly
connected groups of more than one module. Usage: import-circles.py [CRATE_SRC...]
"""
import os
import re
import sys
from pathlib import Path


def code_of(text):
    """The text without comments and without `#[cfg(test)] mod ... { }` blocks."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def modules(src):
    """Top-level module name -> the Rust files in it."""
    mods = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        if rel.name == "tests.rs" or "tests" in rel.parts[:-1]:
            continue
        top = rel.parts[0].removesuffix(".rs")
        if top in ("lib", "main"):
            continue
        mods.setdefault(top, []).append(path)
    return mods


def circles(src):
    mods = modules(src)
    edges = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            for name in re.findall(r"crate::([a-z_][a-z0-9_]*)", code_of(f.read_text())):
                if name in mods and name != m:
                    edges[m].add(name)
    # Tarjan's strongly connected components.
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out, edges


def main():
    root = Path(__file__).resolve().parents[2]
    srcs = [Path(a) for a in sys.argv[1:]] or sorted(
        p for p in root.rglob("src") if p.is_dir() and (p.parent / "Cargo.toml").exists()
        and "target" not in p.parts
    )
    found = 0
    for src in srcs:
        groups, edges = circles(src)
        for g in groups:
            found += 1
            links = ", ".join(f"{a} -> {b}" for a in g for b in sorted(edges[a]) if b in g)
            print(f"{os.path.relpath(src, root)}: {' '.join(g)} ({links})")
    print(f"{found} circle(s)")


if __name__ == "__main__":
    main()
