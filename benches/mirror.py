#!/usr/bin/env python3
"""Benchmark `mab mirror` beside `skopeo copy --all` (one call per image, as a mirror
script runs it) on 20 four-platform images copied between two local registries.

Source: the registry of scripts/test-env ($MAB_E2E_REGISTRY). Target: a second registry
this script starts on a free port. Each image: 4 platforms x (config + 2 layers of 256 KiB
of random bytes), about 2 MiB, 40 MiB in all. Reports cold (empty target) and up-to-date
(second run) wall times. Usage: eval "$(scripts/test-env)"; benches/mirror.py
"""

import hashlib
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time

IMAGES = 20
PLATFORMS = [("linux", "amd64"), ("linux", "arm64"), ("linux", "ppc64le"), ("linux", "s390x")]
LAYER = 256 * 1024


def request(host, method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, timeout=30)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if r.status >= 400:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]}")
    return r, data


def put_blob(host, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r, _ = request(host, "POST", f"/v2/{repo}/blobs/uploads/")
    loc = r.getheader("Location")
    loc = loc.split(host, 1)[-1] if loc.startswith("http") else loc
    sep = "&" if "?" in loc else "?"
    request(host, "PUT", f"{loc}{sep}digest={digest}", body=data, headers={"Content-Type": "application/octet-stream"})
    return digest, len(data)


def put_manifest(host, repo, ref, doc, media_type):
    body = json.dumps(doc, separators=(",", ":")).encode()
    request(host, "PUT", f"/v2/{repo}/manifests/{ref}", body=body, headers={"Content-Type": media_type})
    return "sha256:" + hashlib.sha256(body).hexdigest(), len(body)


def make_images(host):
    for i in range(IMAGES):
        repo = f"bench-src/img{i:02}"
        children = []
        for os_, arch in PLATFORMS:
            layers = [put_blob(host, repo, os.urandom(LAYER)) for _ in range(2)]
            config = json.dumps({"architecture": arch, "os": os_, "rootfs": {"type": "layers",
                                 "diff_ids": [d for d, _ in layers]}}).encode()
            cd, cs = put_blob(host, repo, config)
            manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}
                                   for d, s in layers]}
            md, ms = put_manifest(host, repo, "sha256:" + hashlib.sha256(
                json.dumps(manifest, separators=(",", ":")).encode()).hexdigest(), manifest,
                "application/vnd.oci.image.manifest.v1+json")
            children.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                             "platform": {"architecture": arch, "os": os_}})
        put_manifest(host, repo, "1", {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                       "manifests": children}, "application/vnd.oci.image.index.v1+json")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def timed(cmd, cwd=None):
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    source = os.environ["MAB_E2E_REGISTRY"]
    mab = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "target", "release", "mab"))
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        target = f"127.0.0.1:{port}"
        open(os.path.join(d, "config.yml"), "w").write(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n"
            f"http:\n  addr: {target}\n")
        reg = subprocess.Popen(["docker-registry", "serve", os.path.join(d, "config.yml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    request(target, "GET", "/v2/")
                    break
                except Exception:
                    time.sleep(0.05)
            make_images(source)
            lines = [f'profile "b" default=#true {{ registry "{target}/mab" insecure=#true; }}']
            for i in range(IMAGES):
                lines.append(f'mirror "img{i:02}" from="{source}/bench-src/img{i:02}" insecure=#true {{ tags "1"; }}')
            open(os.path.join(d, "images.kdl"), "w").write("\n".join(lines) + "\n")

            def skopeo():
                for i in range(IMAGES):
                    subprocess.run(["skopeo", "copy", "--all", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                                    f"docker://{source}/bench-src/img{i:02}:1", f"docker://{target}/skopeo/img{i:02}:1"],
                                   check=True, stdout=subprocess.DEVNULL)

            def run(fn):
                start = time.perf_counter()
                fn()
                return time.perf_counter() - start

            mab_cold = timed([mab, "mirror"], cwd=d)
            mab_warm = timed([mab, "mirror"], cwd=d)
            sk_cold = run(skopeo)
            sk_warm = run(skopeo)
            print(f"{IMAGES} images x {len(PLATFORMS)} platforms, {IMAGES * len(PLATFORMS) * 2 * LAYER / 2**20:.0f} MiB of layers, between two local registries")
            print(f"  mab mirror (jobs = {os.cpu_count()})   cold {mab_cold:6.2f} s   up to date {mab_warm:6.3f} s")
            print(f"  skopeo copy --all x{IMAGES}      cold {sk_cold:6.2f} s   up to date {sk_warm:6.3f} s")
            print(f"  cold: mab {sk_cold / mab_cold:.2f}x skopeo's speed; up to date: {sk_warm / mab_warm:.1f}x")
        finally:
            reg.terminate()
            reg.wait()


if __name__ == "__main__":
    main()
