#!/usr/bin/env python3
"""Benchmark `mab plan --format json` on a generated manifest.

500 images x 5 versions x 4 platforms = 10,000 build nodes (plus 2,500 merges), each
image built `from` the same version of the previous image (a 500-deep chain), one
shared mirror at the root. Beside it, the same DAG as a Makefile, dry-run with
`make -n` (what a Makefile-based setup does before anything is built).

Reports median wall time over RUNS runs and peak RSS (GNU time), in the shape the
README quotes. Usage: benches/plan.py [--images 500] [--runs 10] [--mab target/release/mab]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

PLATFORMS = ["linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x"]


def manifest(images: int, versions: int) -> str:
    out = [
        'profile "bench" default=#true { registry "registry.example.com/bench"; }',
        "defaults {",
        "    platforms " + " ".join(f'"{p}"' for p in PLATFORMS),
        '    label "org.opencontainers.image.version" "${version}"',
        "}",
        'mirror "base" from="docker.io/library/alpine" { tags "3.16"; }',
    ]
    for i in range(images):
        out.append(f'image "img{i:03}" {{')
        if i == 0:
            out.append('    from "mirror:base:3.16" arg="BASE_IMAGE"')
        else:
            out.append(f'    from "img{i - 1:03}:${{version}}" arg="BASE_IMAGE"')
        for v in range(versions):
            out.append(f'    version "1.{v}" {{ arg "RELEASE" "1.{v}.0"; }}')
        out.append("}")
    return "\n".join(out) + "\n"


def makefile(images: int, versions: int) -> str:
    reg = "registry.example.com/bench"
    lines = [".PHONY: all", ""]
    merges = []
    for i in range(images):
        for v in range(versions):
            tag = f"1.{v}"
            builds = []
            for p in PLATFORMS:
                arch = p.split("/")[1]
                target = f"build-img{i:03}-{tag}-{arch}"
                base = "mirror-base" if i == 0 else f"merge-img{i - 1:03}-{tag}"
                builds.append(target)
                lines.append(f".PHONY: {target}")
                lines.append(f"{target}: {base}")
                lines.append(
                    f"\tdocker buildx build --platform {p} --build-arg BASE_IMAGE=$(BASE) "
                    f"--build-arg RELEASE=1.{v}.0 --cache-from type=registry,ref={reg}/cache/img{i:03}:{tag}-{arch} "
                    f"--cache-to type=registry,ref={reg}/cache/img{i:03}:{tag}-{arch},mode=max "
                    f"--output type=image,name={reg}/img{i:03},push-by-digest=true,push=true images/img{i:03}"
                )
            merge = f"merge-img{i:03}-{tag}"
            merges.append(merge)
            lines.append(f".PHONY: {merge}")
            lines.append(f"{merge}: {' '.join(builds)}")
            lines.append(f"\tdocker buildx imagetools create --tag {reg}/img{i:03}:{tag} $(DIGESTS)")
    lines.insert(0, f"all: {' '.join(merges)}")
    lines.append(".PHONY: mirror-base")
    lines.append("mirror-base:")
    lines.append(f"\tcrane copy docker.io/library/alpine:3.16 {reg}/thirdparty/base:3.16")
    return "\n".join(lines) + "\n"


def measure(cmd, cwd, runs):
    walls, peaks = [], []
    for _ in range(runs):
        start = time.perf_counter()
        r = subprocess.run(
            ["/usr/bin/time", "-f", "%M"] + cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        walls.append(time.perf_counter() - start)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
        peaks.append(int(r.stderr.strip().splitlines()[-1]))
    return statistics.median(walls), max(peaks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--versions", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--mab", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "mab"))
    a = ap.parse_args()
    mab = os.path.abspath(a.mab)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "images.kdl"), "w") as f:
            f.write(manifest(a.images, a.versions))
        with open(os.path.join(d, "Makefile"), "w") as f:
            f.write(makefile(a.images, a.versions))
        out = subprocess.run([mab, "plan", "--format", "json"], cwd=d, capture_output=True, text=True, check=True).stdout
        builds = out.count('"kind": "build"')
        merges = out.count('"kind": "merge"')
        print(f"manifest: {a.images} images x {a.versions} versions x {len(PLATFORMS)} platforms")
        print(f"plan: {builds} build nodes, {merges} merge nodes, {len(out) / 1e6:.1f} MB of JSON")
        wall, peak = measure([mab, "plan", "--format", "json"], d, a.runs)
        print(f"mab plan --format json      median {wall * 1000:7.1f} ms   peak RSS {peak / 1024:6.1f} MiB")
        for fmt in ["text", "shell", "markdown"]:
            wall, peak = measure([mab, "plan", "--format", fmt], d, a.runs)
            print(f"mab plan --format {fmt:9} median {wall * 1000:7.1f} ms   peak RSS {peak / 1024:6.1f} MiB")
        wall, peak = measure(["make", "-n", "all"], d, a.runs)
        print(f"make -n all (same DAG)      median {wall * 1000:7.1f} ms   peak RSS {peak / 1024:6.1f} MiB")


if __name__ == "__main__":
    main()
