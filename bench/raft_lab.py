"""Raft in the lab: write throughput and commit latency through the Docker API with three
managers (fsync on), against a one-manager lab in the same run, and leader failover.

For small writes (`POST /secrets/create`, one ~150-byte object each, every write a Raft
commit) with 1 and with 64 concurrent clients: writes/s and p50/p99 latency, sent to the
leader and (3 managers) to a follower, whose API forwards each request to the leader over
2377. Then failover with the default timings: kill -9 the leader's daemon, time until the
next write through a surviving manager succeeds; median of N.

The clients are aiohttp sessions on the node's unix socket (`--client httpx` for the
client of earlier runs: at 64 clients httpx's own CPU, on this 2-core machine, bounded
what was measured). `--against DIR` runs the whole set again with the daemons importing
the shoal of another checkout (e.g. /work/main) and prints this tree's ratios to it.
Every row carries the 1-minute load average; ratios are within one invocation.

    PYTHONPATH=$PWD .venv/bin/python bench/raft_lab.py [--seconds 5] [--failovers 10]
        [--against /work/main] [--tag rft]   (as root)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import httpx

from shoal.lab.lab import Lab

_seq = itertools.count()


@dataclass
class Result:
    writes: int
    errors: int
    seconds: float
    latencies: list[float]

    load: float = 0.0

    @property
    def rate(self) -> float:
        return self.writes / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        lat = sorted(self.latencies) or [0.0]
        return lat[min(len(lat) - 1, int(len(lat) * p))] * 1000

    def row(self, label: str, clients: int) -> str:
        return (f"| {label} | {clients} | {self.rate:,.0f} | {self.pct(0.5):.2f} |"
                f" {self.pct(0.99):.2f} | {self.errors} | {self.load:.1f} |")


def _socket(lab: Lab, host: str) -> str:
    return lab.layout.api_url(host).removeprefix("unix://")


def _secret() -> dict[str, object]:
    n = next(_seq)
    return {"Name": f"bench-{n}-{time.monotonic_ns()}", "Labels": {"bench": "raft"},
            "Data": base64.b64encode(b"x" * 96).decode()}


Post = Callable[[], Awaitable[bool]]


async def _load(socket: str, clients: int, seconds: float, kind: str = "aiohttp") -> Result:
    if kind == "httpx":
        transport = httpx.AsyncHTTPTransport(uds=socket)
        async with httpx.AsyncClient(transport=transport, base_url="http://shoal",
                                     timeout=30) as http:

            async def post_httpx() -> bool:
                resp = await http.post("/v1.47/secrets/create", json=_secret())
                return resp.status_code == 201

            return await _drive(post_httpx, clients, seconds)
    connector = aiohttp.UnixConnector(path=socket, limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post_aiohttp() -> bool:
            async with session.post("http://shoal/v1.47/secrets/create",
                                    json=_secret()) as resp:
                await resp.read()
                return resp.status == 201

        return await _drive(post_aiohttp, clients, seconds)


async def _drive(post: Post, clients: int, seconds: float) -> Result:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def one() -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                ok = await post()
            except (aiohttp.ClientError, httpx.HTTPError, TimeoutError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    start = time.monotonic()
    await asyncio.gather(*(one() for _ in range(clients)))
    elapsed = time.monotonic() - start
    return Result(len(latencies), errors, elapsed, latencies, os.getloadavg()[0])


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


def throughput(lab: Lab, label: str, host: str, seconds: float, kind: str) -> dict[int, Result]:
    rows = {}
    for clients in (1, 64):
        rows[clients] = asyncio.run(_load(_socket(lab, host), clients, seconds, kind))
        print(rows[clients].row(label, clients), flush=True)
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
        print(f"failover {i + 1}: {times[-1]:.2f} s (killed {leader}, load"
              f" {os.getloadavg()[0]:.1f})", flush=True)
        lab.start(leader)
        back = survivors[0]
        wait(lambda h=back: reachable(lab, h) == len(hosts), 30, "all managers back")
    return times


@dataclass
class Figures:
    one: dict[int, Result]
    leader: dict[int, Result]
    follower: dict[int, Result]
    failovers: list[float]


def run_set(code: str, tag: str, args: argparse.Namespace) -> Figures:
    """Every figure with the daemons importing shoal from `code` (a checkout's root)."""
    # The lab's daemons inherit the environment and the working directory; `python -m
    # shoal` imports from its working directory first, so both must name `code`.
    os.environ["PYTHONPATH"] = code
    os.chdir(code)
    print(f"## daemons run {code}  (load {os.getloadavg()[0]:.1f})")
    print("| managers, target | clients | writes/s | p50 ms | p99 ms | errors | load |")
    print("|---|---|---|---|---|---|---|")
    one = Lab(f"{tag}1")
    one.down()
    try:
        one.up(nodes=1)
        base = throughput(one, "1 (baseline), leader", "h1", args.seconds, args.client)
    finally:
        one.down()
    lab = Lab(f"{tag}3")
    lab.down()
    try:
        lab.up(nodes=3, managers=3)
        wait(lambda: reachable(lab, "h1") == 3, 30, "three reachable managers")
        leader = wait(lambda: leader_of(lab, lab.hosts()), 20, "a leader")
        follower = next(h for h in lab.hosts() if h != leader)
        lead = throughput(lab, "3, leader", leader, args.seconds, args.client)
        fwd = throughput(lab, "3, follower (forwarded)", follower, args.seconds, args.client)
        times = failover(lab, args.failovers) if args.failovers else []
        if times:
            print(f"failover (kill -9 leader -> next write): median"
                  f" {statistics.median(times):.2f} s, min {min(times):.2f},"
                  f" max {max(times):.2f}, n = {len(times)}")
    finally:
        lab.down()
    figures = Figures(base, lead, fwd, times)
    for c in (1, 64):
        print(f"ratios, {c} client(s): 3-manager leader / 1-manager"
              f" {lead[c].rate / max(base[c].rate, 1e-9):.2f}x,"
              f" follower / leader {fwd[c].rate / max(lead[c].rate, 1e-9):.2f}x")
    return figures


def compare(mine: Figures, other: Figures, what: str) -> None:
    print(f"## this tree / {what}")
    for name in ("one", "leader", "follower"):
        for c in (1, 64):
            a, b = getattr(mine, name)[c], getattr(other, name)[c]
            print(f"{name}, {c} client(s): writes/s {a.rate / max(b.rate, 1e-9):.2f}x,"
                  f" p50 {a.pct(0.5) / max(b.pct(0.5), 1e-9):.2f}x,"
                  f" p99 {a.pct(0.99) / max(b.pct(0.99), 1e-9):.2f}x")
    if mine.failovers and other.failovers:
        print(f"failover median {statistics.median(mine.failovers):.2f} s vs"
              f" {statistics.median(other.failovers):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp")
    parser.add_argument("--against", default="", help="another checkout's root, run second")
    parser.add_argument("--tag", default="braft", help="lab tag prefix (<tag>1, <tag>3)")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent.parent)
    mine = run_set(here, args.tag, args)
    if args.against:
        other = run_set(str(Path(args.against).resolve()), args.tag, args)
        compare(mine, other, args.against)


if __name__ == "__main__":
    main()
