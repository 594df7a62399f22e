"""A task's network plumbing per start and removal, in isolation: this tree's
`shoal.agent.exec.netsetup` against a baseline copy of the module, side by side in one run.

    .venv/bin/python bench/netsetup_start.py [--cycles 200] [--baseline REV|FILE]
                                             [--strace-cycles 50]

One cycle is what the exec runtime does per task: `create_veth(bridge, host, nsfd)`,
`configure_task_side(nsfd, address, gateway)`, `forget_neighbour(bridge, ip)`, and at
removal `delete_link(host)`. The node side runs in a network namespace of this bench's
making (`shoal-bnet-<hex>`, deleted at the end, also on failure; the bench re-runs itself
there under `ip netns exec`) holding a bridge at 198.18.250.1/24; the task side is an
anonymous namespace per variant (a thread's unshare, alive while its fd is open, reused
cycle after cycle: deleting the veth takes its eth0 with it). Cycles of the two variants
alternate in blocks of 10 after a warm-up; per cycle CPU (`time.process_time`: all threads
of the process, so the setns thread too) and wall, mean and median, and the ratios.

Then, unless `--strace-cycles 0`, the syscalls per cycle of each variant: the same child
under `strace -f`, run with that many cycles and with none, the difference divided by the
cycles (netlink messages sent counted from strace's decoding of each sendto/sendmsg).

`--baseline`: a path to a netsetup.py, or a git revision whose
`shoal/agent/exec/netsetup.py` is taken (`git show`); default 98fc851, the module before
the hand-built requests. Root; the machine's root namespace is never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import ipaddress
import json
import os
import re
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.test_netsetup import _task_netns  # noqa: E402  (the tests' helper)

BRIDGE = "sbnet0"
GATEWAY = ipaddress.IPv4Interface("198.18.250.1/24")
BLOCK = 10
WARMUP = 10


# --------------------------------------------------------------------------------------
# child: runs inside the bench's node namespace
# --------------------------------------------------------------------------------------
def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("netsetup_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _cycle(mod: ModuleType, nsfd: int, n: int) -> None:
    host = f"vbn{n:07d}"
    address = ipaddress.IPv4Interface(f"198.18.250.{10 + n % 200}/24")
    await mod.create_veth(BRIDGE, host, nsfd)
    await mod.configure_task_side(nsfd, address, GATEWAY.ip)
    await mod.forget_neighbour(BRIDGE, address.ip)
    await mod.delete_link(host)


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    from shoal.agent.exec import netsetup, nsutil

    if nsutil.ns_inode("/proc/self/ns/net") == nsutil.ns_inode("/proc/1/ns/net"):
        raise SystemExit("refusing to run in the root network namespace")
    variants = {"baseline": _load(args.baseline_file), "this tree": netsetup}
    await netsetup.ensure_bridge(BRIDGE, GATEWAY)
    fds = {name: _task_netns() for name in variants}
    only = [args.only] if args.only else list(variants)
    n = 0
    for name in only:  # warm-up (and the strace runs' only cycles)
        for _ in range(WARMUP if args.cycles else 0):
            await _cycle(variants[name], fds[name], n)
            n += 1
    for name in only:
        for _ in range(args.strace_cycles):
            await _cycle(variants[name], fds[name], n)
            n += 1
    cpu: dict[str, list[float]] = {name: [] for name in only}
    wall: dict[str, list[float]] = {name: [] for name in only}
    user_sys = {name: [0.0, 0.0] for name in only}  # getrusage: the split is tick-sampled
    done = 0
    while done < args.cycles:
        block = min(BLOCK, args.cycles - done)
        for name in only:
            for _ in range(block):
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                c0, w0 = time.process_time(), time.perf_counter()
                await _cycle(variants[name], fds[name], n)
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - w0)
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                user_sys[name][0] += r1.ru_utime - r0.ru_utime
                user_sys[name][1] += r1.ru_stime - r0.ru_stime
                n += 1
        done += block
    left = [line for line in _ip("-o", "link") if "vbn" in line]
    for fd in fds.values():
        os.close(fd)
    return {"cpu": cpu, "wall": wall, "user_sys": user_sys, "links_left": left}


def _ip(*argv: str) -> list[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True).stdout.splitlines()


# --------------------------------------------------------------------------------------
# parent: root namespace, owns the node namespace
# --------------------------------------------------------------------------------------
def _baseline_file(spec: str, tmp: Path) -> str:
    if os.path.isfile(spec):
        return os.path.abspath(spec)
    text = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{spec}:shoal/agent/exec/netsetup.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = tmp / "netsetup_baseline.py"
    path.write_text(text)
    return str(path)


def _child_argv(ns: str, baseline: str, cycles: int, strace_cycles: int, only: str) -> list[str]:
    argv = ["ip", "netns", "exec", ns, sys.executable, __file__, "--child",
            "--baseline-file", baseline, "--cycles", str(cycles),
            "--strace-cycles", str(strace_cycles)]  # fmt: skip
    return argv + (["--only", only] if only else [])


def _run_child(argv: list[str], prefix: list[str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [*(prefix or []), *argv], capture_output=True, text=True, timeout=600,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"bench child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


_CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?(\w+)(\(| resumed>)")


def _syscalls(trace: Path) -> dict[str, int]:
    """Syscalls (each counted once: not its `resumed` half) and netlink messages sent."""
    counts = {"syscalls": 0, "sendto/sendmsg": 0, "recv*": 0, "netlink msgs sent": 0}
    for line in trace.read_text().splitlines():
        match = _CALL.match(line)
        if not match or match.group(2) != "(":
            continue
        name = match.group(1)
        counts["syscalls"] += 1
        if name in ("sendto", "sendmsg"):
            counts["sendto/sendmsg"] += 1
            counts["netlink msgs sent"] += line.count("nlmsg_len=") - line.count("nlmsg_len=0,")
        elif name.startswith("recv"):
            counts["recv*"] += 1
    return counts


def _strace(ns: str, baseline: str, cycles: int, only: str, tmp: Path) -> dict[str, int]:
    out: dict[int, dict[str, int]] = {}
    for n in (0, cycles):
        trace = tmp / f"trace-{only.replace(' ', '_')}-{n}"
        _run_child(
            _child_argv(ns, baseline, 0, n, only),
            ["strace", "-f", "-qq", "-s", "16", "-o", str(trace)],  # -s: decode <= 16 msgs
        )
        out[n] = _syscalls(trace)
    return {k: out[cycles][k] - out[0][k] for k in out[0]}


def _us(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values) * 1e6, statistics.median(values) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--baseline", default="98fc851")
    parser.add_argument("--strace-cycles", type=int, default=50)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-file", help=argparse.SUPPRESS)
    parser.add_argument("--only", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args))))
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    print("load before:", Path("/proc/loadavg").read_text().split()[:3])
    ns = f"shoal-bnet-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="shoal-bnet-") as tmpdir:
        tmp = Path(tmpdir)
        baseline = _baseline_file(args.baseline, tmp)
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            result = _run_child(_child_argv(ns, baseline, args.cycles, 0, ""))
            calls = {}
            if args.strace_cycles > 0:
                for name in ("baseline", "this tree"):
                    calls[name] = _strace(ns, baseline, args.strace_cycles, name, tmp)
        finally:
            subprocess.run(["ip", "netns", "delete", ns], check=False)
    print("load after:", Path("/proc/loadavg").read_text().split()[:3])
    print(f"baseline: {args.baseline}; {args.cycles} cycles each, interleaved in blocks of {BLOCK}")
    print(f"{'per cycle':<12} {'CPU mean µs':>12} {'CPU p50 µs':>11} {'wall mean µs':>13} "
          f"{'wall p50 µs':>12} {'user/sys µs':>13}")  # fmt: skip
    figures = {}
    for name in ("baseline", "this tree"):
        cpu, wall = _us(result["cpu"][name]), _us(result["wall"][name])
        user, system = (t / args.cycles * 1e6 for t in result["user_sys"][name])
        figures[name] = (cpu, wall)
        print(f"{name:<12} {cpu[0]:>12.1f} {cpu[1]:>11.1f} {wall[0]:>13.1f} {wall[1]:>12.1f} "
              f"{user:>6.0f}/{system:<6.0f}")  # fmt: skip
    (bc, bw), (nc, nw) = figures["baseline"], figures["this tree"]
    print(f"{'ratio':<12} {nc[0] / bc[0]:>11.2f}x {nc[1] / bc[1]:>10.2f}x "
          f"{nw[0] / bw[0]:>12.2f}x {nw[1] / bw[1]:>11.2f}x")  # fmt: skip
    if calls:
        print(f"per cycle (strace -f, {args.strace_cycles} cycles):")
        for name, counts in calls.items():
            shown = ", ".join(f"{k} {v / args.strace_cycles:.1f}" for k, v in counts.items())
            print(f"  {name:<10} {shown}")
    if result["links_left"]:
        print("links left in the bench namespace:", result["links_left"])


if __name__ == "__main__":
    main()
