"""Cost of a /metrics scrape on a node whose kernel mesh has N published ports: a scrape
that reads the nftables counters (one `nft -j list table`, what happens at most once a
second) against a scrape served from the last reading (the baseline: every other scrape
within `TRAFFIC_TTL`), side by side in the same run, interleaved. Median of --runs.

    python bench/metrics_scrape.py [--ports 10,100,500] [--runs 30]

Runs itself again inside a network namespace of its own (`shoal-bm-<pid>`, removed at the
end): the kernel mesh refuses the host's namespace. Needs root, `ip` and `nft`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shoal.gossip.table import EndpointTable  # noqa: E402
from shoal.mesh.kernel import KernelDataPlane  # noqa: E402
from shoal.mesh.model import Endpoint, MeshState, PortSpec  # noqa: E402
from shoal.observe.metrics import TRAFFIC_TTL, NodeMetrics  # noqa: E402


@dataclass
class FakeNetwork:
    plane: Any


@dataclass
class FakeNode:
    """What NodeMetrics reads of a worker: no store, no Raft; a network with a plane."""

    network: FakeNetwork
    store: None = None
    endpoints: EndpointTable = field(default_factory=EndpointTable)


def mesh_state(ports: int) -> MeshState:
    specs = tuple(PortSpec(f"s{i}", "tcp", 20000 + i, 80, "ingress") for i in range(ports))
    endpoints = tuple(Endpoint(f"s{i}", f"t{i}", "n1", f"198.19.1.{2 + i % 250}", True)
                      for i in range(ports))
    return MeshState("n1", "198.19.1.0/24", specs, endpoints)


async def one_size(ports: int, runs: int) -> tuple[float, float]:
    plane = KernelDataPlane(table="shoalbench", conntrack=None)
    await plane.apply(mesh_state(ports))
    now = [0.0]
    metrics = NodeMetrics(FakeNode(FakeNetwork(plane)), clock=lambda: now[0])
    fresh: list[float] = []
    cached: list[float] = []
    try:
        for _ in range(runs):
            now[0] += TRAFFIC_TTL * 2  # expired: this scrape reads nft
            began = time.perf_counter()
            await metrics.refresh()
            metrics.exposition()
            fresh.append(time.perf_counter() - began)
            began = time.perf_counter()  # within the TTL: served from that reading
            await metrics.refresh()
            metrics.exposition()
            cached.append(time.perf_counter() - began)
        assert len(await plane.traffic()) == ports
    finally:
        await plane.close()
    return statistics.median(fresh), statistics.median(cached)


async def inner(sizes: list[int], runs: int) -> None:
    print(f"{'ports':>6}  {'scrape reading nft':>19}  {'scrape from cache':>18}  ratio")
    for ports in sizes:
        fresh, cached = await one_size(ports, runs)
        print(f"{ports:>6}  {fresh * 1000:>16.2f} ms  {cached * 1000:>15.2f} ms  "
              f"{fresh / cached:>5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", default="10,100,500")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(p) for p in args.ports.split(",")]
    if args.inside:
        asyncio.run(inner(sizes, args.runs))
        return
    netns = f"shoal-bm-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", netns, sys.executable, __file__, "--inside",
                        "--ports", args.ports, "--runs", str(args.runs)], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


if __name__ == "__main__":
    main()
