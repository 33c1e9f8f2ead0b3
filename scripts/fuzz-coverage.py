#!/usr/bin/env python3
"""Where a fuzz target's coverage is: covered edges per crate, and per relic
function, from libFuzzer's -print_coverage output. Compare two outputs to see
whether relic's own code still gains edges or only third-party parsers do.

  fuzz/target/x86_64-unknown-linux-gnu/release/T fuzz/corpus/T \
      -runs=0 -print_coverage=1 > T.cov 2>&1
  scripts/fuzz-coverage.py T.cov [EARLIER.cov]
"""
import collections
import re
import sys

LINE = re.compile(r"(UN)?COVERED_FUNC: hits: \d+ edges: (\d+)/(\d+) (.*) (\S+):\d+$")


def load(path):
    per_crate = collections.defaultdict(lambda: [0, 0])
    relic = {}
    for line in open(path, errors="replace"):
        m = LINE.match(line.strip())
        if not m:
            continue
        covered, total, func, src = int(m.group(2)), int(m.group(3)), m.group(4), m.group(5)
        if "/src/" in src and "/registry/" not in src and "/rustc/" not in src and "/lib/rustlib/" not in src:
            key = "relic " + src.rsplit("/src/", 1)[1]
            relic[func] = (covered, total)
        else:
            c = re.search(r"registry/src/[^/]+/([^/]+)/", src)
            key = re.sub(r"-[0-9][0-9.]*(\+[\w.-]+)?$", "", c.group(1)) if c else "std/other"
        per_crate[key][0] += covered
        per_crate[key][1] += total
    return per_crate, relic


now_crates, now_relic = load(sys.argv[1])
print("covered edges per crate:")
for k, (c, t) in sorted(now_crates.items(), key=lambda x: -x[1][0]):
    print(f"  {k:40s} {c:6d} / {t:6d}")
if len(sys.argv) > 2:
    _, before = load(sys.argv[2])
    print("relic functions that gained edges since", sys.argv[2])
    for f in sorted(set(before) | set(now_relic)):
        a, b = before.get(f, (0, 0))[0], now_relic.get(f, (0, 0))[0]
        if a != b:
            print(f"  {a:4d} -> {b:4d}  {f[:110]}")
    print("relic total", sum(v[0] for v in before.values()), "->", sum(v[0] for v in now_relic.values()))
