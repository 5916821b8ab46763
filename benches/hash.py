#!/usr/bin/env python3
"""Benchmark context hashing: a generated 1 GiB context of 100,000 files (1,000
directories; sizes 1-20 KiB; a .dockerignore leaving out one directory in 20), warm page
cache, hashed by `mab hash-context` beside `tar -c | sha256sum` on the same tree.
Reports the best of 3 runs in GB/s of context bytes. Usage: benches/hash.py [--mab PATH]
"""

import argparse
import os
import random
import shutil
import subprocess
import tempfile
import time

FILES = 100_000
DIRS = 1_000
TOTAL = 1 << 30


def generate(root):
    rnd = random.Random(11)
    per_dir = FILES // DIRS
    mean = TOTAL // FILES
    written = 0
    for d in range(DIRS):
        sub = os.path.join(root, "logs" if d % 20 == 0 else "src", f"d{d:04}")
        os.makedirs(sub, exist_ok=True)
        for f in range(per_dir):
            size = rnd.randint(mean // 2, mean * 3 // 2)
            with open(os.path.join(sub, f"f{f:03}.bin"), "wb") as out:
                out.write(os.urandom(size))
            written += size
    with open(os.path.join(root, "Dockerfile"), "w") as f:
        f.write("FROM scratch\nCOPY . /\n")
    with open(os.path.join(root, ".dockerignore"), "w") as f:
        f.write("logs/\n")
    return written


def best(cmd, runs=3):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mab", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "mab"))
    a = ap.parse_args()
    mab = os.path.abspath(a.mab)
    root = tempfile.mkdtemp(prefix="mab-hash-")
    try:
        total = generate(root)
        out = subprocess.run([mab, "hash-context", root], capture_output=True, text=True, check=True).stdout
        counted = int(out.split()[3])
        print(f"context: {total / 2**30:.2f} GiB in {FILES} files; after .dockerignore: {counted / 2**30:.2f} GiB ({out.split()[1]} files)")
        mab_cmd = f"{mab} hash-context {root}"
        tar_cmd = f"tar -c -C {root} . | sha256sum"
        best(mab_cmd, 1)  # warm the page cache
        best(tar_cmd, 1)
        t_mab = best(mab_cmd)
        t_tar = best(tar_cmd)
        print(f"  mab hash-context        {t_mab:6.3f} s  {counted / t_mab / 1e9:5.2f} GB/s (of the bytes it hashes)  {total / t_mab / 1e9:5.2f} GB/s of the tree")
        print(f"  tar -c | sha256sum      {t_tar:6.3f} s  {total / t_tar / 1e9:5.2f} GB/s of the tree")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
