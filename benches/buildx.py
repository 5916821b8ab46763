#!/usr/bin/env python3
"""The root images.kdl on the buildx backend: `mab build` cold and with nothing changed, beside
the Makefile a team keeps today (the seeds' kind: mirror with skopeo only when the upstream
digest changed, then one `docker buildx build --platform … --push` per image version with
registry cache, bases by tag, in dependency order, `make -j2`; the same smoke tests, run the
way mab runs them under buildx), on the same BuildKit builder and registry. Then the cache hits
of a `mab build --no-reuse` after the builder's local cache was pruned (registry cache only).

Usage: eval "$(scripts/test-env)"; cargo build --release; benches/buildx.py [--runs N]
"""

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MAB = os.path.join(ROOT, "target", "release", "mab")


def run(cmd, cwd, quiet=True):
    out = subprocess.DEVNULL if quiet else None
    subprocess.run(cmd, cwd=cwd, check=True, stdout=out, stderr=out)


def timed(cmd, cwd):
    start = time.perf_counter()
    run(cmd, cwd)
    return time.perf_counter() - start


def prune():
    """Forget the builder's local cache: what a fresh CI runner's builder has."""
    run(["docker", "buildx", "prune", "--all", "--force"], ROOT)


def makefile(plan, registry_ns):
    """The Makefile of the seed kind, from the plan: one multi-platform buildx build per image
    version, bases by tag, registry cache per image version."""
    q = shlex.quote
    rules, targets = [], []
    mirrors = {}
    builds = {}
    for n in plan["nodes"]:
        if n["kind"] == "mirror":
            tag = n["tags"][0]
            name = f"mirror-{n['id'].split(':', 1)[1].replace(':', '-')}"
            mirrors[n["id"]] = name
            src, dst = f"{n['source']}:{tag}", f"{n['ref']}:{tag}"
            # (With a platform filter, skopeo copies the whole index; crane would filter.)
            copy = "skopeo copy --all --src-tls-verify=false --dest-tls-verify=false"
            inspect = "skopeo inspect --raw --tls-verify=false"
            rules.append(
                f"{name}:\n\t@[ \"$$({inspect} docker://{src} | sha256sum)\" = \"$$({inspect} docker://{dst} 2>/dev/null | sha256sum)\" ] "
                f"|| {copy} docker://{src} docker://{dst}\n"
            )
        elif n["kind"] == "build":
            key = n["id"].split(":", 1)[1].split("@")[0]
            b = builds.setdefault(key, {"node": n, "platforms": [], "tests": []})
            b["platforms"].append(n["platform"])
        elif n["kind"] == "test":
            key = n["id"].split(":", 1)[1].split("@")[0]
            builds[key]["tests"].append((n["platform"], n["test"]))
    for key, b in builds.items():
        n = b["node"]
        image, tag = key.split(":", 1)
        target = f"build-{key.replace(':', '-')}"
        deps = []
        for need in n["needs"]:
            if need.startswith("mirror:"):
                deps.append(mirrors[need])
            elif need.startswith("merge:"):
                deps.append(f"build-{need[6:].replace(':', '-')}")
        ref = f"{n['ref']}:{tag}"
        cache = f"{registry_ns}/cache/{image}:{tag}"
        cmd = ["docker", "buildx", "build", "--progress", "plain", "--platform", ",".join(b["platforms"]),
               "--file", n["dockerfile"]]
        if n.get("target"):
            cmd += ["--target", n["target"]]
        for k, v in n.get("args", {}).items():
            cmd += ["--build-arg", f"{k}={re.sub(r'@{digest:[^}]*}', '', v)}"]
        for k, v in n.get("labels", {}).items():
            cmd += ["--label", f"{k}={v}"]
        cmd += ["--cache-from", f"type=registry,ref={cache},registry.insecure=true",
                "--cache-to", f"type=registry,ref={cache},mode=max,registry.insecure=true",
                "--output", f"type=image,name={ref},push=true,registry.insecure=true", n["context"]]
        lines = [" ".join(q(c) for c in cmd)]
        for platform, test in b["tests"]:
            words = ["sh", "-c", test[0]] if len(test) == 1 else test
            lines.append(f"printf 'FROM %s\\nRUN %s\\n' {q(ref)} {q(json.dumps(words))} | docker buildx build --progress plain --no-cache "
                         f"--platform {platform} --output type=cacheonly -")
        body = "".join(f"\t{l.replace('$', '$$')}\n" for l in lines)
        rules.append(f"{target}: {' '.join(deps)}\n{body}")
        targets.append(target)
    phony = " ".join(targets + list(mirrors.values()))
    return f"all: {' '.join(targets)}\n.PHONY: all {phony}\n\n" + "\n".join(rules)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    registry = os.environ["MAB_E2E_REGISTRY"]
    d = tempfile.mkdtemp(prefix="mab-buildx-bench-")
    try:
        shutil.copy(os.path.join(ROOT, "images.kdl"), d)
        shutil.copytree(os.path.join(ROOT, "images"), os.path.join(d, "images"))
        results = {"mab cold": [], "mab no-op": [], "make cold": [], "make no-op": []}
        hits = None
        for i in range(args.runs):
            ns = f"bench-buildx-{os.getpid()}-{i}"
            base = [MAB, "--profile", "local", "--var", f"upstream={registry}",
                    "--var", f"local_registry={registry}/{ns}"]
            prune()
            results["mab cold"].append(timed(base + ["build"], d))
            results["mab no-op"].append(timed(base + ["build"], d))
            if i == 0:
                # Registry cache only: the builder forgot everything.
                prune()
                run(base + ["build", "--no-reuse", "--report", "nocache.json"], d)
                with open(os.path.join(d, "nocache.json")) as f:
                    report = json.load(f)
                caches = [n["cache"] for n in report["nodes"] if n.get("cache")]
                hits = (sum(c["hits"] for c in caches), sum(c["steps"] for c in caches), len(caches))
            # The Makefile, in its own namespace of the same registry.
            mns = f"bench-make-{os.getpid()}-{i}"
            mbase = [MAB, "--profile", "local", "--var", f"upstream={registry}",
                     "--var", f"local_registry={registry}/{mns}"]
            plan = json.loads(subprocess.run(mbase + ["plan", "--format", "json"], cwd=d, check=True,
                                             capture_output=True, text=True).stdout)
            with open(os.path.join(d, "Makefile"), "w") as f:
                f.write(makefile(plan, f"{registry}/{mns}/platform"))
            prune()
            results["make cold"].append(timed(["make", "-s", "-j2", "all"], d))
            results["make no-op"].append(timed(["make", "-s", "-j2", "all"], d))
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"root images.kdl on the buildx backend, median of {args.runs} runs (each run listed)")
        for k, v in results.items():
            print(f"  {k:12} {med[k]:7.2f} s   ({', '.join(f'{x:.2f}' for x in v)})")
        print(f"  cold: mab {med['make cold'] / med['mab cold']:.2f}x the Makefile's speed")
        print(f"  no-op: mab {med['make no-op'] / med['mab no-op']:.1f}x faster than the Makefile")
        if hits:
            print(f"  after `docker buildx prune --all`: {hits[0]}/{hits[1]} steps from the registry cache in {hits[2]} builds")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
