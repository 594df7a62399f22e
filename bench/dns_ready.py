"""Time from a task becoming ready to its address in `tasks.SERVICE` on every node (issue 12:
goal <= 0.5 s on 5 nodes), against the managers' view of the same event in the same run.

A lab of --nodes hosts (tag `bdr`, torn down at the end); a global `probe` service on an
overlay network puts one task on every node, and this process holds one UDP socket inside
each probe task's netns (made by a thread that setns()es), asking its node's embedded DNS
at 127.0.0.11 for `tasks.svc` every --every ms, all nodes in turn. `svc` (busybox sleep,
no health check: ready as it starts) is scaled up one task at a time, --reps times.

For each new task: t0 = the first node whose DNS lists it (its own node: the owner
publishes locally at once, so t0 is the ready moment to within one poll round),
spread = the last node's time - t0 (gossip + each node's name table), and as the
baseline, manager lag = when the managers' API (h1, polled every 20 ms) shows the task
running - t0 (status report -> dispatcher -> Raft commit -> store). Prints every sample,
the medians and maxima, the ratio, and the load average. Needs root.

    .venv/bin/python bench/dns_ready.py [--nodes 5] [--reps 8] [--every 2]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import os
import select
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.message

from shoal.agent.exec.netns_call import in_netns_at
from shoal.lab import Lab, images
from shoal.lab.layout import CLIENT
from shoal.lab.procs import LAB_REGISTRY

IMAGE = f"{LAB_REGISTRY}/busybox:bench"


def docker(lab: Lab, *args: str) -> str:
    proc = lab.exec("h1", ["docker", *args], capture=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)}: {proc.stderr}")
    return str(proc.stdout)


def running(lab: Lab, service: str) -> list[dict[str, Any]]:
    flt = {"filters": {"service": {service: True}}}
    return [t for t in lab.client("h1").get("/tasks", params=flt)
            if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]


def wait(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise SystemExit(f"timed out: {what}")


def dns_socket(task_id: str) -> socket.socket:
    [path] = glob.glob(f"/run/netns/*{task_id[:12]}")

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        return s

    return in_netns_at(path, make, "bench-dns")


def ask_all(socks: list[socket.socket], wire: bytes, timeout: float) -> list[set[str]]:
    """One `tasks.svc` query per node; each node's answer (empty if none came in time)."""
    for s in socks:
        s.sendto(wire, ("127.0.0.11", 53))
    answers: list[set[str]] = [set() for _ in socks]
    pending = set(range(len(socks)))
    deadline = time.monotonic() + timeout
    while pending and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([socks[i] for i in pending], [], [], left)
        for s in ready:
            i = socks.index(s)
            reply = dns.message.from_wire(s.recv(4096))
            answers[i] = {r.address for rr in reply.answer for r in rr}
            pending.discard(i)
    return answers


class ApiWatch(threading.Thread):
    """When the managers' API (h1) first showed each svc task's address running (a thread,
    so its ~20 ms requests do not slow the DNS polling)."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(daemon=True)
        self.lab = lab
        self.first: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                for t in running(self.lab, "svc"):
                    addr = t["NetworksAttachments"][0]["Addresses"][0].split("/")[0]
                    self.first.setdefault(addr, time.monotonic())
            time.sleep(0.02)


def measure(
    lab: Lab, socks: list[socket.socket], reps: int, every: float
) -> list[tuple[float, float]]:
    wire = dns.message.make_query("tasks.svc", "A").to_wire()
    known: set[str] = set()
    samples = []
    api = ApiWatch(lab)
    api.start()
    try:
        for rep in range(1, reps + 1):
            docker(lab, "service", "scale", "-d", f"svc={rep}")
            seen: dict[int, float] = {}
            rounds: list[float] = []
            new: str | None = None
            deadline = time.monotonic() + 60
            while (len(seen) < len(socks) or new not in api.first) and (
                time.monotonic() < deadline
            ):
                now = time.monotonic()
                rounds.append(now)
                for i, got in enumerate(ask_all(socks, wire, 0.2)):
                    fresh = got - known
                    if fresh and i not in seen:
                        new = new or sorted(fresh)[0]
                        seen[i] = now
                time.sleep(every)
            if len(seen) < len(socks) or new is None or new not in api.first:
                raise SystemExit(f"rep {rep}: the new task did not reach every node in 60 s")
            known.add(new)
            t0 = min(seen.values())
            spread, lag = max(seen.values()) - t0, api.first[new] - t0
            samples.append((spread, lag))
            gaps = [b - a for a, b in itertools.pairwise(rounds)]
            order = " ".join(f"{(seen[i] - t0) * 1e3:.0f}" for i in sorted(seen))
            print(f"task {rep} ({new}): every node's DNS +{spread * 1e3:6.0f} ms "
                  f"(per node: {order} ms), managers' API +{lag * 1e3:6.0f} ms; "
                  f"poll round {statistics.median(gaps) * 1e3:.1f} ms", flush=True)
    finally:
        api.stop.set()
        api.join(5)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--every", type=float, default=2.0, help="ms between poll rounds")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (lab namespaces)")
    lab = Lab("bdr")
    lab.down()
    socks: list[socket.socket] = []
    try:
        lab.up(nodes=args.nodes)
        images.push("busybox", IMAGE, netns=lab.layout.netns(CLIENT))
        docker(lab, "network", "create", "-d", "overlay", "benchnet")
        docker(lab, "service", "create", "-d", "--name", "probe", "--mode", "global",
               "--network", "benchnet", IMAGE, "sleep", "3600")
        docker(lab, "service", "create", "-d", "--name", "svc", "--replicas", "0",
               "--network", "benchnet", IMAGE, "sleep", "3600")
        probes = wait("probe on every node",
                      lambda: len(r := running(lab, "probe")) == args.nodes and r)
        socks = [dns_socket(t["ID"]) for t in probes]
        samples = measure(lab, socks, args.reps, args.every / 1e3)
    finally:
        for s in socks:
            s.close()
        lab.down()
    spreads, lags = [s for s, _ in samples], [lag for _, lag in samples]
    print(f"\n{args.nodes} nodes, {len(samples)} tasks, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"ready -> tasks.svc on every node: median {statistics.median(spreads) * 1e3:.0f} ms,"
          f" max {max(spreads) * 1e3:.0f} ms (goal <= 500 ms)")
    print(f"baseline, ready -> managers' API running: median "
          f"{statistics.median(lags) * 1e3:.0f} ms, max {max(lags) * 1e3:.0f} ms")
    print(f"ratio every-node DNS / managers' view (medians): "
          f"{statistics.median(spreads) / max(statistics.median(lags), 1e-6):.2f}x")


if __name__ == "__main__":
    main()
