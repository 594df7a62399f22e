"""First pull of a ~5 MB image from the lab registry (198.18.0.3:5000) by a node's daemon
(`docker pull` through the Docker API: skopeo copy + blob check + umoci unpack + records),
against `skopeo copy` alone of the same image from the same host, side by side per round.

    .venv/bin/python bench/image_pull.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from shoal.lab import Lab
from shoal.lab import images as test_images

REGISTRY = "198.18.0.3:5000"


def timed(lab: Lab, argv: list[str]) -> float:
    start = time.perf_counter()
    proc = lab.exec("h1", argv, capture=True, timeout=300)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv}: {proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    layout = test_images.build("bulky")
    blobs = sum(f.stat().st_size for f in (layout / "blobs" / "sha256").iterdir())
    lab = Lab("bpull")
    lab.down()
    try:
        lab.up(nodes=1, swarm=False)
        shoal_s, skopeo_s = [], []
        for i in range(args.rounds):
            ref = f"{REGISTRY}/bulky:r{i}"
            test_images.push("bulky", ref, netns=lab.layout.netns("client"))
            with tempfile.TemporaryDirectory() as d:
                skopeo_s.append(timed(lab, ["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                            f"docker://{ref}", f"oci:{d}/l:x"]))  # fmt: skip
            shoal_s.append(timed(lab, ["docker", "pull", "-q", ref]))
            timed(lab, ["docker", "image", "rm", ref])  # the next round is a first pull again
        print(f"image: {blobs / 1e6:.1f} MB of blobs, {args.rounds} rounds (first pulls)")
        print(f"skopeo copy alone : p50 {statistics.median(skopeo_s) * 1000:.0f} ms")
        print(f"shoal docker pull : p50 {statistics.median(shoal_s) * 1000:.0f} ms")
        print(f"ratio shoal/skopeo: {statistics.median(shoal_s) / statistics.median(skopeo_s):.2f}")
    finally:
        lab.down()


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root (it builds a lab)")
    main()
