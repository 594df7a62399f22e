"""Userspace mesh vs kernel mesh vs direct, same lab, same task, same run.

Builds a 1-node lab whose daemon runs `--mesh userspace` (its own tag), runs one `shoal
whoami` task published on 8080 (the userspace proxy), and programs the *kernel* mesh for
the same task on 8081 beside it (`python -m shoal.mesh.driver --table shoalbench` in the
node's namespace). From the lab's client, `wrk` drives: a twin task's own address (direct),
node:8081 (kernel), node:8080 (userspace); 1 KiB bodies with keep-alive and with a new
connection per request, and 1 MiB bodies (MiB/s). The three paths take turns, `--rounds`
times, and each prints its median round (a shared machine is noisy). Prints the figures
and the ratios.

Then, inside the node's namespace, the cost of `apply` on the userspace plane with 1,000
published ports of 10 endpoints each: the first apply (binds 1,000 listeners), an apply
that moves one endpoint of one port, and an apply of the same state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labload import running_tasks, wrk

from shoal.lab.lab import Lab
from shoal.lab.layout import LabLayout
from shoal.lab.procs import shoal_daemon_argv
from shoal.mesh.model import Endpoint, MeshState, PortSpec

TAG = "benchu"
MIB = 1024 * 1024


def userspace_daemon(layout: LabLayout, host: str) -> list[str]:
    return [*shoal_daemon_argv(layout, host), "--mesh", "userspace"]


class KernelDriver:
    """The kernel data plane in the node's namespace, through its JSON-lines driver."""

    def __init__(self, lab: Lab) -> None:
        self.proc = lab.popen(
            "h1",
            [sys.executable, "-m", "shoal.mesh.driver", "--table", "shoalbench"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = json.loads(self.proc.stdout.readline())
        if not reply.get("ok"):
            raise SystemExit(f"kernel mesh driver: {reply.get('error')}")
        return reply

    def close(self) -> None:
        try:
            self.call({"op": "close"})
        finally:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def wait_answers(lab: Lab, url: str) -> None:
    deadline = time.monotonic() + 10
    while lab.exec("client", ["curl", "-sf", "-o", "/dev/null", url]).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer within 10 s")
        time.sleep(0.1)


def create(lab: Lab, name: str, published: int | None) -> tuple[str, dict[str, Any]]:
    ports = [{"TargetPort": 80, "PublishedPort": published}] if published else []
    sid: str = lab.client("h1").post(
        "/services/create",
        {
            "Name": name,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "shoal",
                    "Labels": {"shoal.runtime": "exec"},  # a host program (exec runtime)
                    "Args": ["whoami", "--port", "80"],
                }
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            "EndpointSpec": {"Ports": ports},
        },
    )["ID"]
    return sid, running_tasks(lab, sid, 1)[0]


def measure(lab: Lab, seconds: int, connections: int, rounds: int) -> None:
    client = lab.client("h1")
    sid, task = create(lab, "bench", 8080)
    # The direct path gets a twin task of its own: the client's connections to it and the
    # kernel mesh's (not SNAT'd) would otherwise share 4-tuples at the task, and TIME_WAIT
    # with disagreeing timestamps (PAWS, DESIGN.md) would stall whichever path runs second.
    _, twin = create(lab, "benchdirect", None)
    node = client.get(f"/nodes/{task['NodeID']}")
    node_addr = lab.address("h1")
    subprocess.run(
        [
            "ip",
            "-n",
            lab.layout.netns("client"),
            "route",
            "replace",
            node["Subnet"],
            "via",
            node_addr,
        ],
        check=True,
    )
    kernel = KernelDriver(lab)
    try:
        state = MeshState(
            task["NodeID"],
            node["Subnet"],
            (PortSpec(sid, "tcp", 8081, 80, "ingress"),),
            (Endpoint(sid, task["ID"], task["NodeID"], task["Address"], True),),
        )
        kernel.call({"op": "apply", "state": state.to_dict()})
        paths = {
            "direct": f"http://{twin['Address']}:80",
            "kernel": f"http://{node_addr}:8081",
            "userspace": f"http://{node_addr}:8080",
        }
        for base in paths.values():
            wait_answers(lab, base + "/health")
        report(lab, paths, seconds, connections, rounds)
    finally:
        kernel.close()


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def report(lab: Lab, paths: dict[str, str], seconds: int, connections: int, rounds: int) -> None:
    modes = [
        ("keep-alive", 1024, False),
        ("new connection", 1024, True),
        ("1 MiB bodies", MIB, False),
    ]
    print(
        f"\none whoami task, from the lab client: wrk -t2 -c{connections} -d{seconds}s, "
        f"median of {rounds} interleaved rounds"
    )
    print(
        f"{'mode':<16}{'path':<11}{'req/s':>10}{'MiB/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    )
    for mode, size, close in modes:
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, base in paths.items():
                runs[name].append(wrk(lab, f"{base}/data?size={size}", seconds, connections, close))
        rows = {name: median_run(r) for name, r in runs.items()}
        for name, r in rows.items():
            print(
                f"{mode:<16}{name:<11}{r['rps']:>10.0f}{r['rps'] * size / MIB:>9.1f}"
                f"{r['p50']:>9.2f}{r['p99']:>9.2f}{r['errors']:>8.0f}"
            )
        d, k, u = rows["direct"], rows["kernel"], rows["userspace"]
        for label, a, b in (("kernel/direct", k, d), ("user/direct", u, d), ("user/kernel", u, k)):
            print(
                f"{mode:<16}{label:<15}{a['rps'] / b['rps']:>6.2f}{'':>9}"
                f"{a['p50'] / b['p50']:>9.2f}{a['p99'] / b['p99']:>9.2f}"
            )


# ------------------------------------------------------------------ apply cost (in netns)


def big_state(services: int, per: int, shift: int = 0) -> MeshState:
    ports, endpoints = [], []
    for s in range(services):
        sid = f"svc{s:04d}"
        ports.append(PortSpec(sid, "tcp", 20000 + s, 80, "ingress"))
        for e in range(per):
            n = s * per + e + (shift if s == 0 and e == 0 else 0)
            endpoints.append(
                Endpoint(sid, f"{sid}.{e}", "n1", f"198.19.{100 + n // 250}.{1 + n % 250}", True)
            )
    return MeshState("n1", "198.19.1.0/24", tuple(ports), tuple(endpoints))


async def apply_cost(services: int, per: int, rounds: int) -> dict[str, float]:
    from shoal.mesh.userspace import UserspaceDataPlane

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, services + 1024)), hard))
    plane = UserspaceDataPlane(kernel_table=None)
    base, moved = big_state(services, per), big_state(services, per, shift=services * per)
    t0 = time.perf_counter()
    await plane.apply(base)
    first = time.perf_counter() - t0
    changes, same = [], []
    for i in range(rounds):
        t0 = time.perf_counter()
        await plane.apply(moved if i % 2 == 0 else base)
        changes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await plane.apply(moved if i % 2 == 0 else base)
        same.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    await plane.close()
    close = time.perf_counter() - t0
    return {
        "first_ms": first * 1000,
        "change_ms": statistics.median(changes) * 1000,
        "same_ms": statistics.median(same) * 1000,
        "close_ms": close * 1000,
    }


def report_apply(lab: Lab, services: int, per: int) -> None:
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--apply-only",
        "--services",
        str(services),
        "--per",
        str(per),
    ]
    out = lab.exec("h1", argv, capture=True, check=True, timeout=600).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(f"\nuserspace apply, {services} published ports x {per} endpoints (median of 30):")
    print(f"  first apply (bind {services} listeners) {r['first_ms']:8.1f} ms")
    print(f"  move one endpoint of one port          {r['change_ms']:8.1f} ms")
    print(f"  same state again                       {r['same_ms']:8.1f} ms")
    print(f"  close                                  {r['close_ms']:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per", type=int, default=10)
    parser.add_argument(
        "--apply-only",
        action="store_true",
        help="(internal) measure apply in the current namespace, print JSON",
    )
    args = parser.parse_args()
    if args.apply_only:
        print(json.dumps(asyncio.run(apply_cost(args.services, args.per, 30))))
        return
    if shutil.which("wrk") is None:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL
        )
    lab = Lab(TAG, daemon_argv=userspace_daemon)
    lab.down()
    lab.up(nodes=1)
    try:
        measure(lab, args.seconds, args.connections, args.rounds)
        report_apply(lab, args.services, args.per)
    finally:
        lab.down()


if __name__ == "__main__":
    main()
