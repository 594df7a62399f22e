"""The routing mesh against the direct path and two peers (HAProxy, nginx), and its apply cost.

One invocation, as root: `.venv/bin/python bench/mesh.py [--seconds 3] [--rounds 3]`.

Traffic: a 2-node lab (kernel mesh) with one `shoal whoami` task pinned to h1, published on
8080, and a twin task on h1 for the direct path (see bench/README.md: PAWS). `wrk` in the
lab's client drives, for 1 KiB bodies with keep-alive and with a new connection per request,
and for 1 MiB bodies (MiB/s):
  direct        the twin task's own address (the limit)
  mesh local    h1:8080, the node that runs the task (DNAT, no SNAT)
  mesh remote   h2:8080, a node without a task: across the VXLAN overlay to h1 (masquerade);
                "n/a: <why>" while h2 does not answer within --remote-deadline
  haproxy       HAProxy `mode tcp` in h1's namespace on h1:8181 -> the task's address
  nginx         nginx `stream` in h1's namespace on h1:8282 -> the task's address
then a second lab whose daemons run `--mesh userspace`: direct, userspace local, userspace
remote. The paths of a lab take turns, `--rounds` times; each row is the median round.
Ratios are against the direct path of the same lab.

Apply cost (`--only apply`; `--no-userspace` drops the userspace column): in a private
network namespace (`unshare --net`, gone with the process), the time of the data planes'
apply with 1,000 published services of 10 endpoints each: first full apply, one endpoint
changed, one service added (removed), the same state again, an endpoint change with 1,000
flows tracked (so the conntrack deletion has a table to search), and `apply(state)` without
a delta. Kernel planes, same run: main's at BASELINE (taken from git: PlanCache planning,
`nft -f -` and `conntrack -R -` processes), this tree's with the programs
(`library=False`), and this tree's in-process (libnftables, netlink); the delta planes get
`apply_delta` with the delta MeshSync would hand them, found outside the timing (its cost,
"finding the changed service", is printed on its own). This tree's planes return once the
rules are in and delete the departed backends' conntrack entries after (the next apply
waits for them): each apply is timed after the previous one's deletions finished, and the
deletions of the tracked-flows change are printed on their own row. And the pure planning
part of an endpoint change: whole table, plan cache, delta planner.

HAProxy and nginx (with its stream module) come from apt; the bench installs them when
missing. They run with config files in a temp dir and are killed by PID; the labs are torn
down in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labload import (
    answer_error,
    apt_install_missing,
    create_service,
    median_run,
    route_to_tasks,
    syn_retransmits,
    tune_client,
    wrk,
)

from shoal.lab.lab import Lab
from shoal.lab.layout import LabLayout
from shoal.lab.procs import shoal_daemon_argv
from shoal.mesh.model import Endpoint, MeshState, PortSpec

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "69ac8b7"  # main before the delta planner: PlanCache, nft and conntrack programs
MIB = 1024 * 1024
NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so"
TOOLS = [("wrk", "wrk"), ("haproxy", "haproxy"), ("nginx", "nginx"),
         (NGINX_STREAM, "libnginx-mod-stream")]
MODES = [("keep-alive 1 KiB", 1024, False), ("new conn 1 KiB", 1024, True),
         ("1 MiB bodies", MIB, False)]
APPLY_ROUNDS = 15
Result = dict[str, float]

# ------------------------------------------------------------------ peers (HAProxy, nginx)


def haproxy_config(listen: str, backend: str) -> str:
    return f"""global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend bench
    bind {listen}
    default_backend task
backend task
    server task {backend}
"""


def nginx_config(listen: str, backend: str, tmp: Path) -> str:
    return f"""load_module {NGINX_STREAM};
worker_processes auto;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.log warn;
events {{ worker_connections 4096; }}
stream {{
    upstream task {{ server {backend}; }}
    server {{ listen {listen}; proxy_pass task; }}
}}
"""


class Peers:
    """HAProxy and nginx in the foreground on a lab host; stopped by PID (nginx's master
    takes its workers down on SIGTERM)."""

    def __init__(self, lab: Lab, host: str, tmp: Path) -> None:
        self.lab, self.host, self.tmp = lab, host, tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, config: str, argv: list[str]) -> None:
        (self.tmp / f"{name}.conf").write_text(config)
        with open(self.tmp / f"{name}.out", "wb") as out:
            self.procs[name] = self.lab.popen(
                self.host, argv, stdout=out, stderr=subprocess.STDOUT
            )

    def haproxy(self, listen: str, backend: str) -> None:
        self.start("haproxy", haproxy_config(listen, backend),
                   ["haproxy", "-db", "-f", str(self.tmp / "haproxy.conf")])

    def nginx(self, listen: str, backend: str) -> None:
        conf = self.tmp / "nginx.conf"
        self.start("nginx", nginx_config(listen, backend, self.tmp),
                   ["nginx", "-p", str(self.tmp), "-e", str(self.tmp / "nginx.log"),
                    "-c", str(conf), "-g", "daemon off;"])

    def why_dead(self, name: str) -> str:
        text = (self.tmp / f"{name}.out").read_text(errors="replace").strip().splitlines()
        return text[-1] if text else "exited"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


# ------------------------------------------------------------------ traffic


def userspace_daemon(layout: LabLayout, host: str) -> list[str]:
    return [*shoal_daemon_argv(layout, host), "--mesh", "userspace"]


def check(lab: Lab, url: str, timeout: float) -> str | None:
    """None if `url` answers within `timeout`, else "n/a: <why>"."""
    error = answer_error(lab, url + "/health", timeout)
    return None if error is None else f"n/a: no answer within {timeout:.0f} s ({error})"


def lab_paths(lab: Lab, kind: str, peers: Peers, deadline: float) -> dict[str, str]:
    """name -> base URL, or "n/a: ..." for a path that does not answer."""
    client = lab.client("h1")
    _, task = create_service(lab, "bench", 8080, "shoal-h1")
    # The direct path has a twin task of its own: direct and local-mesh connections reach the
    # task with the same 4-tuples but timestamp offsets the client drew for different ones
    # (task:80 vs node:8080, before DNAT), and TIME_WAIT would then stall one of them (PAWS).
    _, twin = create_service(lab, "benchdirect", None, "shoal-h1")
    h1, h2 = lab.address("h1"), lab.address("h2")
    tune_client(lab)
    route_to_tasks(lab, client.get(f"/nodes/{task['NodeID']}")["Subnet"], h1)
    paths = {
        "direct": f"http://{twin['Address']}:80",
        f"{kind} mesh, local task": f"http://{h1}:8080",
        f"{kind} mesh, remote task": f"http://{h2}:8080",
    }
    if kind == "kernel":
        backend = f"{task['Address']}:80"
        peers.haproxy(f"{h1}:8181", backend)
        peers.nginx(f"{h1}:8282", backend)
        paths["haproxy tcp (on h1)"] = f"http://{h1}:8181"
        paths["nginx stream (on h1)"] = f"http://{h1}:8282"
    out = {}
    for name, url in paths.items():
        # the remote path is the one expected to fail until the cluster mesh is wired
        problem = check(lab, url, deadline if "remote" in name else 10.0)
        peer = name.split()[0]
        if problem is not None and peer in peers.procs and peers.procs[peer].poll() is not None:
            problem = f"n/a: {peer} exited: {peers.why_dead(peer)}"
        if problem is not None and (name == "direct" or "local" in name):
            raise SystemExit(f"{name} ({url}) does not answer: {problem}")
        out[name] = problem or url
    return out


def drive(lab: Lab, paths: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """mode -> path -> median Result (or the "n/a" string), paths taking turns each round."""
    table: dict[str, Any] = {}
    for mode, size, close in MODES:
        runs: dict[str, list[Result]] = {n: [] for n, u in paths.items() if u.startswith("http")}
        for _ in range(args.rounds):
            for name in runs:
                url = f"{paths[name]}/data?size={size}"
                before = syn_retransmits(lab)
                run = wrk(lab, url, args.seconds, args.connections, close)
                run["syn_rtx"] = syn_retransmits(lab) - before
                runs[name].append(run)
        table[mode] = {n: summary(runs[n]) if n in runs else u for n, u in paths.items()}
    return table


def summary(runs: list[Result]) -> Result:
    """The median round, with the rounds' req/s range (% of the median) and all SYN rtx."""
    out = dict(median_run(runs))
    rps = [r["rps"] for r in runs]
    out["range"] = (max(rps) - min(rps)) / out["rps"] * 100
    out["syn_rtx"] = sum(r["syn_rtx"] for r in runs)
    return out


def run_lab(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    tag = "benchmk" if kind == "kernel" else "benchmu"
    lab = Lab(tag, daemon_argv=userspace_daemon if kind == "userspace" else shoal_daemon_argv)
    lab.down()
    with tempfile.TemporaryDirectory(prefix="shoal-meshbench-") as tmp:
        peers = Peers(lab, "h1", Path(tmp))
        try:
            lab.up(nodes=2)
            paths = lab_paths(lab, kind, peers, args.remote_deadline)
            print(f"{kind} lab: " + ", ".join(
                f"{n} {'ok' if u.startswith('http') else u}" for n, u in paths.items()
            ), flush=True)
            return drive(lab, paths, args)
        finally:
            peers.stop()
            lab.down()


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nwrk -t2 -c{args.connections} -d{args.seconds}s from the lab client, one whoami "
          f"task, median of {args.rounds} interleaved rounds (range: spread of the rounds' "
          f"req/s; SYN rtx: all rounds); x direct = same lab's direct path")
    head = (f"{'mode':<18}{'path':<28}{'req/s':>9}{'range':>7}{'MiB/s':>8}{'p50 ms':>8}"
            f"{'p99 ms':>8}{'errors':>7}{'SYN rtx':>8}{'req/s x':>9}{'p99 x':>7}")
    print(head)
    print("-" * len(head))
    for mode, size, _ in MODES:
        for kind, table in results.items():
            rows = table[mode]
            d = rows["direct"]
            for name, r in rows.items():
                label = f"direct ({kind} lab)" if name == "direct" else name
                if isinstance(r, str):
                    print(f"{mode:<18}{label:<28}{r}")
                    continue
                print(f"{mode:<18}{label:<28}{r['rps']:>9.0f}{r['range']:>6.0f}%"
                      f"{r['rps'] * size / MIB:>8.1f}"
                      f"{r['p50']:>8.2f}{r['p99']:>8.2f}{r['errors']:>7.0f}{r['syn_rtx']:>8.0f}"
                      f"{r['rps'] / d['rps']:>9.2f}{r['p99'] / d['p99']:>7.2f}")
        print()


# ------------------------------------------------------------------ apply cost (private netns)


def big_state(services: int, per: int, shift: int = 0) -> MeshState:
    """`services` ingress TCP ports 20000+s of `per` endpoints each, spread over 4 nodes;
    `shift` moves the first endpoint of the first service to another address."""
    ports, endpoints = [], []
    for s in range(services):
        sid = f"svc{s:04d}"
        ports.append(PortSpec(sid, "tcp", 20000 + s, 80, "ingress"))
        for e in range(per):
            n = s * per + e + (shift if s == 0 and e == 0 else 0)
            node = f"n{1 + n % 4}"
            endpoints.append(Endpoint(sid, f"{sid}.{e}", node,
                                      f"198.19.{100 + n // 250}.{1 + n % 250}", True))
    return MeshState("n1", "198.19.1.0/24", tuple(ports), tuple(endpoints))


async def timed(call: Callable[[], Awaitable[None]]) -> float:
    t0 = time.perf_counter()
    await call()
    return (time.perf_counter() - t0) * 1000


async def apply_series(plane: Any, services: int, per: int, rounds: int) -> dict[str, float]:
    """Times of `plane.apply`, or of `apply_delta` with the delta MeshSync would hand it
    (found outside the timing, as MeshSync finds it before it calls the plane)."""
    from shoal.mesh.model import MeshDelta, changed_services, service_groups

    base = big_state(services, per)
    moved = big_state(services, per, shift=services * per)
    grown = big_state(services + 1, per)
    groups = {id(s): service_groups(s) for s in (base, moved, grown)}
    delta_plane = hasattr(plane, "apply_delta")
    background = hasattr(plane, "flushed")  # conntrack deletions after the apply returns
    last: list[Any] = [None]
    flush_ms: list[float] = []

    async def apply(state: MeshState) -> None:
        prev = last[0]
        if background:
            await plane.flushed()  # the last apply's deletions, not this apply's cost
        if delta_plane and prev is not None:
            delta = MeshDelta(prev, changed_services(groups[id(prev)], groups[id(state)]))
            t0 = time.perf_counter()
            await plane.apply_delta(state, delta)
        else:
            t0 = time.perf_counter()
            await plane.apply(state)
        last[0] = state
        took.append((time.perf_counter() - t0) * 1000)
        if background:
            t1 = time.perf_counter()
            await plane.flushed()
            flush_ms.append((time.perf_counter() - t1) * 1000)

    took: list[float] = []
    await apply(base)
    out = {"first_ms": took[-1]}
    series: dict[str, list[float]] = {"change_ms": [], "add_ms": [], "remove_ms": [],
                                      "same_ms": []}
    for _ in range(rounds):
        for key, state in (("change_ms", moved), ("change_ms", base), ("add_ms", grown),
                           ("remove_ms", base), ("same_ms", base)):
            await apply(state)
            series[key].append(took[-1])
    out.update({k: statistics.median(v) for k, v in series.items()})
    # the same change with 1,000 flows tracked in the namespace (conntrack deletions dump)
    await seed_conntrack(1000)
    series["change_ct_ms"] = []
    flush_ms.clear()
    for _ in range(rounds):
        for state in (moved, base):
            await apply(state)
            series["change_ct_ms"].append(took[-1])
    out["change_ct_ms"] = statistics.median(series["change_ct_ms"])
    if background:
        out["change_ct_flush_ms"] = statistics.median(flush_ms)
    await seed_conntrack(0)
    if delta_plane:  # apply(state) without a delta: the plane compares the states itself
        plain = []
        for state in [moved, base] * rounds:
            t0 = time.perf_counter()
            await plane.apply(state)
            plain.append((time.perf_counter() - t0) * 1000)
        out["change_plain_ms"] = statistics.median(plain)
        out["in_process"] = float(bool(getattr(plane, "in_process", False)))
    out["close_ms"] = await timed(plane.close)
    return out


async def seed_conntrack(flows: int) -> None:
    """Empty this namespace's conntrack table, then track `flows` established TCP flows to
    svc0000's port (20000), spread over its backends."""
    from pyroute2.conntrack import AsyncConntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    base = big_state(1, 10)
    backends = [e.address for e in base.endpoints]
    async with AsyncConntrack() as ct:
        await ct.flush()
        for i in range(flows):
            sport = 30000 + i
            await ct.entry(
                "add", timeout=300,
                tuple_orig=NFCTAttrTuple(saddr="198.18.0.2", daddr="198.18.0.11", proto=6,
                                         sport=sport, dport=20000),
                tuple_reply=NFCTAttrTuple(saddr=backends[i % len(backends)],
                                          daddr="198.18.0.2", proto=6, sport=80,
                                          dport=sport),
                status=0xE,  # confirmed, seen reply, assured: an established flow
                protoinfo={"attrs": [["CTA_PROTOINFO_TCP",
                                      {"attrs": [["CTA_PROTOINFO_TCP_STATE", 3]]}]]},
            )


def plan_only(services: int, per: int, rounds: int) -> dict[str, float]:
    """The pure part of an endpoint change: planning and diffing, and the conntrack
    flushes; the whole table replanned, the plan cache (main's), and the delta planner,
    same run; and what MeshSync adds to find the changed services (group + compare)."""
    from shoal.mesh import plan as planner
    from shoal.mesh.model import changed_services, service_groups
    from shoal.mesh.plan_cache import PlanCache
    from shoal.mesh.plan_delta import DeltaPlanner

    base_state = big_state(services, per)
    moved = big_state(services, per, shift=services * per)
    out: dict[str, float] = {}
    for label, cache in (("plan_ms", None), ("cached_plan_ms", PlanCache())):
        prev = planner.plan(base_state, cache=cache)
        times, lines = [], 0
        for i in range(rounds):
            state = moved if i % 2 == 0 else base_state
            t0 = time.perf_counter()
            new = planner.plan(state, cache=cache)
            script = planner.transaction(prev.ruleset, new.ruleset, "shoal", prev_known=True)
            planner.conntrack_flushes(prev.ports, new.ports)
            times.append((time.perf_counter() - t0) * 1000)
            lines = script.count("\n") + 1
            prev = new
        out[label] = statistics.median(times)
        out["change_lines"] = lines
    delta = DeltaPlanner()
    delta.full(base_state)
    times = []
    for i in range(rounds):
        state = moved if i % 2 == 0 else base_state
        t0 = time.perf_counter()
        delta.delta(state, {"svc0000"})
        times.append((time.perf_counter() - t0) * 1000)
    out["delta_plan_ms"] = statistics.median(times)
    old_groups = service_groups(base_state)
    times = []
    for i in range(rounds):
        state = moved if i % 2 == 0 else base_state
        t0 = time.perf_counter()
        new_groups = service_groups(state)
        changed_services(old_groups, new_groups)
        times.append((time.perf_counter() - t0) * 1000)
        old_groups = new_groups
    out["find_change_ms"] = statistics.median(times)
    return out


def main_kernel_plane(tmp: Path) -> Any:
    """main's KernelDataPlane at BASELINE (PlanCache planning, `nft -f -` and `conntrack -R
    -` processes), from git, against this tree's plan.py (unchanged since)."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASELINE}:shoal/mesh/kernel.py"],
        check=True, capture_output=True, text=True,
    ).stdout
    (tmp / "kernel_baseline.py").write_text(text)
    sys.path.insert(0, str(tmp))
    module = importlib.import_module("kernel_baseline")
    return module.KernelDataPlane(table="shoal")


async def apply_cost(services: int, per: int, rounds: int,
                     userspace: bool) -> dict[str, dict[str, float]]:
    from shoal.mesh.kernel import KernelDataPlane
    from shoal.mesh.userspace import UserspaceDataPlane

    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="shoal-meshbench-") as tmp:
        planes = [("main", lambda: main_kernel_plane(Path(tmp))),
                  ("programs", lambda: KernelDataPlane(table="shoal", library=False)),
                  ("in-process", lambda: KernelDataPlane(table="shoal"))]
        for label, make in planes:
            out[label] = await apply_series(make(), services, per, rounds)
    out["main"].update(plan_only(services, per, rounds))
    if userspace:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (max(soft, min(hard, services + 1024)), hard))
        out["userspace"] = await apply_series(UserspaceDataPlane(kernel_table=None), services,
                                              per, rounds)
    return out


def report_apply(args: argparse.Namespace) -> None:
    argv = ["unshare", "--net", "--", sys.executable, str(Path(__file__).resolve()),
            "--apply-only", "--services", str(args.services), "--per", str(args.per)]
    if args.no_userspace:
        argv.append("--no-userspace")
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=900).stdout
    r = json.loads(out.strip().splitlines()[-1])
    columns = [("main", f"main {BASELINE}"), ("programs", "delta+progs"),
               ("in-process", "delta+in-proc")]
    if "userspace" in r:
        columns.append(("userspace", "userspace"))
    print(f"apply, {args.services} published services x {args.per} endpoints, fresh netns, "
          f"load {os.getloadavg()[0]:.1f} (median of {2 * APPLY_ROUNDS} changes, "
          f"{APPLY_ROUNDS} of the others); kernel planes: main = PlanCache + nft/conntrack "
          f"programs; delta+progs = delta planner + programs; delta+in-proc = delta planner "
          f"+ libnftables + netlink (in_process={r['in-process'].get('in_process', 0):.0f})")
    print(f"{'ms':<40}" + "".join(f"{head:>16}" for _, head in columns))
    for label, key in (("first full apply", "first_ms"), ("one endpoint changed", "change_ms"),
                       ("one service added", "add_ms"), ("one service removed", "remove_ms"),
                       ("same state again", "same_ms"),
                       ("endpoint changed, 1,000 flows tracked", "change_ct_ms"),
                       ("  its conntrack deletions, after it", "change_ct_flush_ms"),
                       ("endpoint changed, apply() w/o delta", "change_plain_ms"),
                       ("close", "close_ms")):
        cells = "".join(f"{r[c][key]:>16.1f}" if key in r[c] else f"{'-':>16}"
                        for c, _ in columns)
        print(f"{label:<40}{cells}")
    k = r["main"]
    print(f"pure planning + diff of an endpoint change: whole table {k['plan_ms']:.1f} ms, "
          f"plan cache (main) {k['cached_plan_ms']:.1f} ms, delta planner "
          f"{k['delta_plan_ms']:.2f} ms; MeshSync finding the changed service (group the "
          f"state per service, compare) {k['find_change_ms']:.1f} ms; nft transaction "
          f"{k['change_lines']:.0f} lines")
    print(f"one endpoint changed: in-process {r['in-process']['change_ms']:.1f} ms vs main "
          f"{k['change_ms']:.1f} ms ({k['change_ms'] / r['in-process']['change_ms']:.0f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--remote-deadline", type=float, default=15.0,
                        help="seconds h2 gets to answer before the remote row is n/a")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per", type=int, default=10)
    parser.add_argument("--only", choices=["kernel", "userspace", "apply"], action="append",
                        help="run only these parts (repeatable); default all")
    parser.add_argument("--apply-only", action="store_true",
                        help="(internal) measure apply in the current namespace, print JSON")
    parser.add_argument("--no-userspace", action="store_true",
                        help="apply cost: kernel planes only (skip the userspace column)")
    args = parser.parse_args()
    if args.apply_only:
        print(json.dumps(asyncio.run(
            apply_cost(args.services, args.per, APPLY_ROUNDS, not args.no_userspace))))
        return
    parts = args.only or ["kernel", "userspace", "apply"]
    if parts != ["apply"]:
        apt_install_missing(TOOLS)
    start = time.monotonic()
    results = {kind: run_lab(kind, args) for kind in ("kernel", "userspace") if kind in parts}
    if results:
        print_table(results, args)
    if "apply" in parts:
        report_apply(args)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n(bench took {time.monotonic() - start:.0f} s; load average now {load} on "
          f"{os.cpu_count()} CPUs: other work on the machine makes the figures noisier)")


if __name__ == "__main__":
    main()
