"""Raft in the lab: write throughput and commit latency through the Docker API with three
managers (fsync on), against a one-manager lab in the same run, and leader failover.

For small writes (`POST /secrets/create`, one ~150-byte object each, every write a Raft
commit) with 1 and with 64 concurrent clients: writes/s and p50/p99 latency, sent to the
leader and (3 managers) to a follower, whose API forwards each request to the leader over
2377. Then failover with the default timings: kill -9 the leader's daemon, time until the
next write through a surviving manager succeeds; median of N.

    .venv/bin/python bench/raft_lab.py [--seconds 5] [--failovers 10]   (as root)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from shoal.lab.lab import Lab

_seq = itertools.count()


@dataclass
class Result:
    writes: int
    errors: int
    seconds: float
    latencies: list[float]

    def row(self, label: str, clients: int) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = lat[len(lat) // 2] * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        rate = self.writes / self.seconds
        return (f"| {label} | {clients} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |"
                f" {self.errors} |")


def _socket(lab: Lab, host: str) -> str:
    return lab.layout.api_url(host).removeprefix("unix://")


def _secret() -> dict[str, object]:
    n = next(_seq)
    return {"Name": f"bench-{n}-{time.monotonic_ns()}", "Labels": {"bench": "raft"},
            "Data": base64.b64encode(b"x" * 96).decode()}


async def _load(socket: str, clients: int, seconds: float) -> Result:
    transport = httpx.AsyncHTTPTransport(uds=socket)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(transport=transport, base_url="http://shoal",
                                 timeout=30) as http:
        deadline = time.monotonic() + seconds

        async def one() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                resp = await http.post("/v1.47/secrets/create", json=_secret())
                if resp.status_code == 201:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(clients)))
        elapsed = time.monotonic() - start
    return Result(len(latencies), errors, elapsed, latencies)


def leader_of(lab: Lab, hosts: list[str]) -> str | None:
    for host in hosts:
        try:
            with lab.client(host, timeout=5) as api:
                nodes = api.get("/nodes")
        except Exception:
            continue
        for n in nodes:
            status = n.get("ManagerStatus") or {}
            if status.get("Leader"):
                addr = status["Addr"].rsplit(":", 1)[0]
                return next(h for h in lab.hosts() if lab.address(h) == addr)
    return None


def wait(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception:
            result = None
        if result:
            return result
        time.sleep(0.05)
    raise SystemExit(f"bench: {what} not within {timeout}s")


def reachable(lab: Lab, host: str) -> int:
    with lab.client(host, timeout=5) as api:
        nodes = api.get("/nodes")
    return sum(1 for n in nodes
               if (n.get("ManagerStatus") or {}).get("Reachability") == "reachable")


def throughput(lab: Lab, label: str, host: str, seconds: float) -> list[str]:
    rows = []
    for clients in (1, 64):
        result = asyncio.run(_load(_socket(lab, host), clients, seconds))
        rows.append(result.row(label, clients))
        print(rows[-1], flush=True)
    return rows


def failover(lab: Lab, rounds: int) -> list[float]:
    hosts = lab.hosts()
    times = []
    for i in range(rounds):
        leader = wait(lambda: leader_of(lab, hosts), 20, "a leader")
        survivors = [h for h in hosts if h != leader]
        t0 = time.monotonic()
        lab.kill_daemon(leader)
        for host in itertools.cycle(survivors):
            try:
                with lab.client(host, timeout=3) as api:
                    api.post("/secrets/create", _secret())
                break
            except Exception:
                if time.monotonic() - t0 > 60:
                    raise SystemExit("bench: no write within 60 s of the kill") from None
        times.append(time.monotonic() - t0)
        print(f"failover {i + 1}: {times[-1]:.2f} s (killed {leader})", flush=True)
        lab.start(leader)
        back = survivors[0]
        wait(lambda h=back: reachable(lab, h) == len(hosts), 30, "all managers back")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--failovers", type=int, default=10)
    args = parser.parse_args()
    print("| managers, target | clients | writes/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    one = Lab("braft1")
    one.down()
    try:
        one.up(nodes=1)
        throughput(one, "1 (baseline), leader", "h1", args.seconds)
    finally:
        one.down()
    lab = Lab("braft3")
    lab.down()
    try:
        lab.up(nodes=3, managers=3)
        wait(lambda: reachable(lab, "h1") == 3, 30, "three reachable managers")
        leader = wait(lambda: leader_of(lab, lab.hosts()), 20, "a leader")
        follower = next(h for h in lab.hosts() if h != leader)
        throughput(lab, "3, leader", leader, args.seconds)
        throughput(lab, "3, follower (forwarded)", follower, args.seconds)
        times = failover(lab, args.failovers)
        print(f"failover (kill -9 leader -> next write): median {statistics.median(times):.2f} s,"
              f" min {min(times):.2f}, max {max(times):.2f}, n = {len(times)}")
    finally:
        lab.down()


if __name__ == "__main__":
    main()
