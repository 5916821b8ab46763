#!/usr/bin/env python3
"""Benchmark a no-op rebuild of the root images.kdl: `mab build` when nothing changed
(every build reused after registry look-ups) beside the same 18 builds run by a Makefile
calling `buildah build --layers` (which can only hit the local layer cache), in the
test environment of scripts/test-env; then what `sign` adds to a no-op rebuild (each merge
reads the signature of every image it holds). Usage: eval "$(scripts/test-env)"; benches/noop.py
"""

import os
import re
import shutil
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MAB = os.path.join(ROOT, "target", "release", "mab")


def timed(cmd, cwd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def median_of(n, cmd, cwd, env=None):
    runs = sorted(timed(cmd, cwd, env) for _ in range(n))
    return runs[n // 2], runs[0], runs[-1]


def main():
    registry = os.environ["MAB_E2E_REGISTRY"]
    d = tempfile.mkdtemp(prefix="mab-noop-")
    try:
        shutil.copy(os.path.join(ROOT, "images.kdl"), d)
        shutil.copytree(os.path.join(ROOT, "images"), os.path.join(d, "images"))
        ns = f"bench-noop-{os.getpid()}"
        base = [MAB, "--profile", "local-buildah", "--var", f"upstream={registry}", "--var", f"local_registry={registry}/{ns}"]
        cold = timed(base + ["build"], d)
        noop = timed(base + ["build"], d)
        # The Makefile a team keeps today: every build, every time; the layer cache makes it quick.
        script = subprocess.run(base + ["plan", "--format", "shell"], cwd=d, check=True, capture_output=True, text=True).stdout
        targets, rules = [], []
        for block in script.split("\n# ")[1:]:
            lines = block.splitlines()
            node = lines[0].strip()
            if not node.startswith("build:"):
                continue
            build = next(l for l in lines if l.startswith("buildah build"))
            # Bases by tag: what a Makefile without digests pins to.
            build = re.sub(r'@"\$\(cat [^)]*\)"', "", build)
            name = f"t{len(targets)}"
            targets.append(name)
            rules.append(f"{name}:\n\t{build.replace('$', '$$')}\n")
        with open(os.path.join(d, "Makefile"), "w") as f:
            f.write(f"all: {' '.join(targets)}\n.PHONY: all {' '.join(targets)}\n" + "\n".join(rules))
        digests = os.path.join(d, ".mab", "digests")
        os.makedirs(digests, exist_ok=True)
        try:
            make_cold = timed(["make", "-s", "-j2", "all"], d)
            make_warm = timed(["make", "-s", "-j2", "all"], d)
        except subprocess.CalledProcessError:
            # buildah 1.28 can fail two builds that pull one base at once ("image not known").
            make_cold = make_warm = None
        # Signing: the same profile with a key. The first run signs every image and index
        # (nothing is built); later no-op runs read the signatures and write nothing.
        unsigned = median_of(5, base + ["build"], d)
        with open(os.path.join(d, "images.kdl")) as f:
            text = f.read()
        marker = 'profile "local-buildah" {'
        assert marker in text, "the root manifest's local-buildah profile"
        with open(os.path.join(d, "images.kdl"), "w") as f:
            f.write(text.replace(marker, marker + '\n    sign key="env:MAB_SIGNING_KEY"', 1))
        key = subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                             check=True, capture_output=True, text=True).stdout
        env = dict(os.environ, MAB_SIGNING_KEY=key)
        first_signed = timed(base + ["build"], d, env)
        signed = median_of(5, base + ["build"], d, env)
        print(f"root images.kdl: {len(targets)} builds (amd64 + arm64 under emulation, 4-platform builder)")
        print(f"  mab build, first run         {cold:6.2f} s")
        print(f"  mab build, nothing changed   {noop:6.2f} s  ({noop / cold * 100:.1f} % of the first run)")
        if make_warm is None:
            print("  make -j2 of buildah --layers failed (buildah: two pulls of one base at once)")
        else:
            print(f"  make -j2 of buildah --layers {make_warm:6.2f} s  (warm layer cache; its first run {make_cold:.2f} s)")
            print(f"  no-op: mab {make_warm / noop:.1f}x faster than the Makefile")
        print(f"  no-op, median of 5 (min-max)  {unsigned[0]:6.2f} s  ({unsigned[1]:.2f}-{unsigned[2]:.2f})")
        print(f"  first run with sign           {first_signed:6.2f} s  (signs every image and index, builds nothing)")
        print(f"  no-op with sign, median of 5  {signed[0]:6.2f} s  ({signed[1]:.2f}-{signed[2]:.2f}; +{(signed[0] - unsigned[0]) * 1000:.0f} ms)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
