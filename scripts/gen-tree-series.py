#!/usr/bin/env python3
"""Generate a deterministic series of daily tarballs of a source-like tree.

Each DIR/dayNN.tar is an uncompressed tar of a project checkout:

* many small text files (code-like lines, 0.3-40 KB) in nested directories,
* some binary files of random bytes (images, libraries: incompressible),
* a few large files: an append-mostly JSON-lines fixture, a "database file"
  whose 4 KiB pages are rewritten in place, and a static random media file.

Between days a few text files are edited (lines inserted/replaced/deleted),
some files are added and removed, a binary is occasionally replaced, the
JSON fixture grows and some database pages change. Changed files get the
day's mtime; everything else keeps its metadata, so unchanged members are
byte-identical in consecutive tarballs (only their offsets shift).

Day 1 is about --size-mb MB (1 MB = 10^6 bytes). Output depends only on the
arguments (seeded PRNG).
"""

import argparse
import io
import os
import random
import sys
import tarfile
import time

MB = 1_000_000
EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY = 86_400

WORDS = (
    "buffer chunk index store repo snapshot reader writer config error result "
    "handle stream packet frame cache entry node tree graph queue worker task "
    "client server request response header body token parser lexer state "
    "value key hash digest block page offset length count size limit timeout "
    "retry policy event signal channel sender receiver mutex lock guard pool"
).split()
TEXT_EXT = [".rs", ".rs", ".rs", ".py", ".py", ".js", ".ts", ".c", ".h", ".go",
            ".md", ".toml", ".yaml", ".json", ".sql", ".sh"]
BIN_EXT = [".png", ".jpg", ".so", ".woff2", ".gz", ".pdf", ".ico"]
TEMPLATES = [
    "let {a} = {b}.{c}({d}, {n});",
    "fn {a}_{b}(&mut self, {c}: &{D}) -> Result<{D}, Error> {{",
    "if {a}.{b}() > {n} {{ return Err(Error::{D}); }}",
    "for {a} in {b}.iter().filter(|x| x.{c} != {n}) {{",
    "    self.{a}.insert({b}, {c}.clone());",
    "}}",
    "",
    "// {A} the {b} before the {c} is flushed ({n} bytes max).",
    "def {a}_{b}(self, {c}, {d}={n}):",
    "    return self.{a}[{b}:{c}] + {n}",
    "import {a}.{b} as {c}",
    "const {A}_{B} = {n};",
    "    {a}: {D},",
    "#[derive(Debug, Clone)]",
    "struct {D}{E} {{",
    "    assert_eq!({a}.{b}(), {n});",
    "  - name: {a}-{b}",
    "    {a} = {b}_{c}({d})",
    "SELECT {a}, {b} FROM {c} WHERE {d} = {n};",
]


class Gen:
    def __init__(self, rng):
        self.rng = rng
        # Pool of code-like lines; files are random sequences of pool lines with
        # varying indentation, so they compress ~3-4x like real source.
        self.lines = []
        for _ in range(60000):
            t = rng.choice(TEMPLATES)
            w = {k: rng.choice(WORDS) for k in "abcd"}
            w.update({k.upper(): v.upper() for k, v in w.items() if k in "ab"})
            w["D"] = rng.choice(WORDS).capitalize()
            w["E"] = rng.choice(WORDS).capitalize()
            w["n"] = rng.randint(0, 65536)
            self.lines.append(t.format(**w))
        self.indent = ["", "    ", "        ", "            ", "\t"]

    def text_lines(self, n):
        rng = self.rng
        return [i + l for i, l in zip(rng.choices(self.indent, weights=(4, 4, 3, 1, 1), k=n),
                                      rng.choices(self.lines, k=n))]

    def text_file(self, size):
        lines = self.text_lines(max(3, size // 30))
        return ("\n".join(lines) + "\n").encode()

    def binary(self, size):
        return self.rng.randbytes(size)

    def json_records(self, n, start, day):
        rng = self.rng
        return "".join(
            f'{{"id": {start + i}, "ts": {EPOCH + day * DAY + rng.randrange(DAY)}, '
            f'"kind": "{rng.choice(WORDS)}", "user": "{rng.choice(WORDS)}_{rng.randrange(5000)}", '
            f'"value": {rng.random() * 1000:.3f}, "tags": ["{rng.choice(WORDS)}", "{rng.choice(WORDS)}"]}}\n'
            for i in range(n)).encode()


class Tree:
    def __init__(self, g, size):
        self.g = g
        self.files = {}    # path -> [bytes, mtime]
        self.dirs = []
        self.json_next = 0
        rng = g.rng
        # Directory skeleton: ~1 directory per 25 small files.
        n_dirs = max(4, int(size * 0.55 / 8000 / 25))
        tops = ["src", "lib", "crates", "tests", "docs", "tools", "web", "migrations"]
        for i in range(n_dirs):
            depth = rng.randint(1, 3)
            parts = [rng.choice(tops)] + [f"{rng.choice(WORDS)}_{rng.randrange(100)}" for _ in range(depth)]
            self.dirs.append("project/" + "/".join(parts))
        self.dirs = sorted(set(self.dirs))
        used = 0
        while used < size * 0.55:
            used += self.add_text(0) + 1024  # + tar header/padding
        while used < size * 0.70:
            used += self.add_binary(0) + 1024
        big = size - used
        self.json_next = 0
        self.files["project/data/fixtures.jsonl"] = [b"", self.mtime(0)]
        self.append_json(int(big * 0.4), 0)
        self.files["project/data/state.db"] = [self.db_file(int(big * 0.35)), self.mtime(0)]
        self.files["project/assets/intro.mp4"] = [g.binary(int(big * 0.25)), self.mtime(0)]

    def mtime(self, day):
        return EPOCH + day * DAY - self.g.rng.randrange(0, 400 * DAY if day == 0 else DAY)

    def new_name(self, exts):
        rng = self.g.rng
        while True:
            p = f"{rng.choice(self.dirs)}/{rng.choice(WORDS)}_{rng.choice(WORDS)}{rng.randrange(1000)}{rng.choice(exts)}"
            if p not in self.files:
                return p

    def add_text(self, day):
        # Log-normal-ish sizes: median ~5 KB, a tail to ~40 KB.
        size = int(min(40000, max(300, self.g.rng.lognormvariate(8.5, 0.9))))
        data = self.g.text_file(size)
        self.files[self.new_name(TEXT_EXT)] = [data, self.mtime(day)]
        return len(data)

    def add_binary(self, day):
        size = int(min(512 * 1024, max(4096, self.g.rng.lognormvariate(10.5, 1.0))))
        self.files[self.new_name(BIN_EXT)] = [self.g.binary(size), self.mtime(day)]
        return size

    def db_file(self, size):
        # 4 KiB pages: header + compressible rows + free space zeros.
        pages = []
        for p in range(max(1, size // 4096)):
            pages.append(self.db_page(p))
        return b"".join(pages)

    def db_page(self, p):
        rng = self.g.rng
        rows = "".join(rng.choices(self.g.lines, k=rng.randint(20, 60))).encode()[:3000]
        page = p.to_bytes(8, "little") + rng.randbytes(8) + rows
        return page + bytes(4096 - len(page))

    def append_json(self, nbytes, day):
        f = self.files["project/data/fixtures.jsonl"]
        chunk = b""
        while len(chunk) < nbytes:
            n = max(1, (nbytes - len(chunk)) // 150)
            chunk += self.g.json_records(n, self.json_next, day)
            self.json_next += n
        f[0] += chunk
        f[1] = self.mtime(day)

    def advance(self, day, edit_frac):
        rng, g = self.g.rng, self.g
        paths = sorted(self.files)
        text = [p for p in paths if p.endswith(tuple(TEXT_EXT))]
        binp = [p for p in paths if p.endswith(tuple(BIN_EXT))]
        # Edit a few text files: replace, insert and delete some lines.
        for p in rng.sample(text, max(1, round(edit_frac * len(text)))):
            lines = self.files[p][0].decode().split("\n")
            for _ in range(rng.randint(1, 6)):
                i = rng.randrange(len(lines))
                op = rng.random()
                if op < 0.5:
                    lines[i] = g.text_lines(1)[0]
                elif op < 0.85:
                    lines[i:i] = g.text_lines(rng.randint(1, 30))
                elif len(lines) > 4:
                    del lines[i:i + rng.randint(1, 10)]
            self.files[p] = ["\n".join(lines).encode(), self.mtime(day)]
        # Add and remove files.
        for _ in range(max(1, round(0.3 * edit_frac * len(text)))):
            self.add_text(day)
        for p in rng.sample(text, max(1, round(0.2 * edit_frac * len(text)))):
            del self.files[p]
        if binp and rng.random() < 0.5:
            p = rng.choice(binp)
            del self.files[p]
            self.add_binary(day)
        # Big files: fixture grows ~0.5 %, ~1 % of db pages rewritten in place.
        fx = self.files["project/data/fixtures.jsonl"]
        self.append_json(len(fx[0]) // 200 + 1, day)
        db = self.files["project/data/state.db"]
        buf = bytearray(db[0])
        npages = len(buf) // 4096
        for p in rng.sample(range(npages), max(1, npages // 100)):
            buf[p * 4096:(p + 1) * 4096] = self.db_page(p)
        db[0], db[1] = bytes(buf), self.mtime(day)

    def write(self, path):
        tmp = path + ".tmp"
        with open(tmp, "wb", buffering=1 << 22) as fo, \
                tarfile.open(fileobj=fo, mode="w", format=tarfile.PAX_FORMAT) as tar:
            seen = set()
            for p in sorted(self.files):
                data, mtime = self.files[p]
                # Parent directories first, once each (tar's usual order).
                parts = p.split("/")
                for k in range(1, len(parts)):
                    d = "/".join(parts[:k])
                    if d not in seen:
                        seen.add(d)
                        ti = tarfile.TarInfo(d)
                        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, EPOCH
                        self.owner(ti)
                        tar.addfile(ti)
                ti = tarfile.TarInfo(p)
                ti.size, ti.mtime = len(data), mtime
                ti.mode = 0o755 if p.endswith((".sh", ".so")) else 0o644
                self.owner(ti)
                tar.addfile(ti, io.BytesIO(data))
        os.replace(tmp, path)

    @staticmethod
    def owner(ti):
        ti.uid = ti.gid = 1000
        ti.uname = ti.gname = "dev"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--size-mb", type=float, default=100.0, help="approx. size of day 1 (MB = 1e6 bytes)")
    ap.add_argument("--edit-frac", type=float, default=0.01,
                    help="fraction of text files edited per day (default 0.01)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    tree = None
    for day in range(1, args.days + 1):
        t0 = time.monotonic()
        if day == 1:
            tree = Tree(Gen(rng), int(args.size_mb * MB))
        else:
            tree.advance(day - 1, args.edit_frac)
        path = os.path.join(args.out, f"day{day:02d}.tar")
        tree.write(path)
        print(f"{path}: {os.path.getsize(path) / MB:.1f} MB, {len(tree.files)} files, "
              f"{time.monotonic() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
