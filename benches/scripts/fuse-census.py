#!/usr/bin/env python3
"""Summarises `perf script` output of the fuse:fuse_request_send/end tracepoints.

Prints, per FUSE opcode: how many requests the kernel sent, and the total and mean time
from send to answer. Read from stdin; used by profile-mount.sh (TRACE=1).
"""
import re
import sys
from collections import defaultdict

SEND = re.compile(r"\s([\d.]+):\s+fuse:fuse_request_send: connection \d+ req (\d+) opcode \d+ \((\w+)\)")
END = re.compile(r"\s([\d.]+):\s+fuse:fuse_request_end: connection \d+ req (\d+) ")

pending = {}
count = defaultdict(int)
total = defaultdict(float)
for line in sys.stdin:
    m = SEND.search(line)
    if m:
        pending[m.group(2)] = (m.group(3), float(m.group(1)))
        count[m.group(3)] += 1
        continue
    m = END.search(line)
    if m and m.group(2) in pending:
        op, t0 = pending.pop(m.group(2))
        total[op] += float(m.group(1)) - t0

print(f"{'opcode':<20} {'requests':>9} {'total s':>9} {'mean ms':>9}")
for op in sorted(count, key=lambda o: -total[o]):
    mean = 1000 * total[op] / count[op] if count[op] else 0
    print(f"{op:<20} {count[op]:>9} {total[op]:>9.2f} {mean:>9.3f}")
print(f"{'all':<20} {sum(count.values()):>9} {sum(total.values()):>9.2f}")
