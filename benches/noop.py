#!/usr/bin/env python3
"""Benchmark a no-op rebuild of the root images.kdl: `mab build` when nothing changed
(every build reused after registry look-ups) beside the same 18 builds run by a Makefile
calling `buildah build --layers` (which can only hit the local layer cache), in the
test environment of scripts/test-env. Usage: eval "$(scripts/test-env)"; benches/noop.py
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
        make_cold = timed(["make", "-s", "-j2", "all"], d)
        make_warm = timed(["make", "-s", "-j2", "all"], d)
        print(f"root images.kdl: {len(targets)} builds (amd64 + arm64 under emulation, 4-platform builder)")
        print(f"  mab build, first run         {cold:6.2f} s")
        print(f"  mab build, nothing changed   {noop:6.2f} s  ({noop / cold * 100:.1f} % of the first run)")
        print(f"  make -j2 of buildah --layers {make_warm:6.2f} s  (warm layer cache; its first run {make_cold:.2f} s)")
        print(f"  no-op: mab {make_warm / noop:.1f}x faster than the Makefile")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
