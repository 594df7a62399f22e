"""What an idle daemon costs: CPU (% of one core) and RSS, manager vs worker, this checkout
against a baseline checkout, both labs up side by side in the same invocation.

Two labs of --nodes hosts (--managers managers) are brought up at once, one from this
checkout (lab tag --tag) and one from --baseline (a second worktree, e.g. `git worktree
add /work/wt-fast-base a62bf31`; lab tag --base-tag); each runs the code of its own tree
(PYTHONPATH and cwd). After --settle s, every daemon's CPU time (utime + stime of
/proc/PID/stat, all its threads) is read, again after --seconds s of idling, and VmRSS of
/proc/PID/status at the end. Both labs are torn down at the end (also on failure).

    .venv/bin/python bench/idle.py [--seconds 60] [--settle 20] [--baseline /work/wt-fast-base]
    .venv/bin/python bench/idle.py --keep --tag fast --no-baseline   (an already running lab)

The load average of the machine is printed: other processes slow both labs alike, so the
ratio is the figure to trust.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def lab(tree: Path, tag: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "SHOAL_LAB_TAG": tag}
    return subprocess.run([sys.executable, "-m", "shoal", "lab", *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


def daemons(tag: str) -> dict[str, tuple[str, int]]:
    state = json.loads(Path(f"/run/shoal-{tag}-lab/state.json").read_text())
    return {host: (info["role"], int(info["pid"])) for host, info in state["hosts"].items()
            if info.get("pid")}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mib(pid: int) -> float:
    """Proportional set size: shared library pages split between the processes mapping
    them (the daemons of one lab share cryptography's, libpython's... pages; RSS counts them
    whole in every daemon)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--managers", type=int, default=3)
    parser.add_argument("--tag", default="fasta")
    parser.add_argument("--base-tag", default="fastb")
    parser.add_argument("--baseline", type=Path, default=Path("/work/wt-fast-base"))
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--keep", action="store_true", help="measure labs already up; keep them")
    args = parser.parse_args()
    labs = {"this checkout": (HERE, args.tag)}
    if not args.no_baseline:
        labs["baseline"] = (args.baseline.resolve(), args.base_tag)
    try:
        if not args.keep:
            for tree, tag in labs.values():
                done = lab(tree, tag, "up", "--nodes", str(args.nodes),
                           "--managers", str(args.managers))  # fmt: skip
                if done.returncode != 0:
                    raise SystemExit(f"lab up {tag} failed:\n{done.stdout}{done.stderr}")
        time.sleep(args.settle)
        pids = {name: daemons(tag) for name, (_, tag) in labs.items()}
        before = {name: {h: cpu_seconds(p) for h, (_, p) in d.items()} for name, d in pids.items()}
        load_before = os.getloadavg()
        began = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - began
        report(pids, before, elapsed, load_before)
    finally:
        if not args.keep:
            for tree, tag in labs.values():
                lab(tree, tag, "down")


def report(
    pids: dict[str, dict[str, tuple[str, int]]],
    before: dict[str, dict[str, float]],
    elapsed: float,
    load_before: tuple[float, float, float],
) -> None:
    print(f"idle for {elapsed:.0f} s; load average before {load_before[0]:.1f}, "
          f"after {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| code | host | role | CPU % of a core | RSS MiB | PSS MiB | threads |")
    print("|---|---|---|---|---|---|---|")
    summary: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, hosts in pids.items():
        for host, (role, pid) in sorted(hosts.items()):
            pct = 100 * (cpu_seconds(pid) - before[name][host]) / elapsed
            rss = rss_mib(pid)
            summary.setdefault(name, {}).setdefault(role, []).append((pct, rss))
            print(f"| {name} | {host} | {role} | {pct:.2f} | {rss:.1f} | {pss_mib(pid):.1f} "
                  f"| {threads(pid)} |")  # fmt: skip
    print()
    print("| code | role | mean CPU % | max CPU % | mean RSS MiB | max RSS MiB | CPU vs baseline |")
    print("|---|---|---|---|---|---|---|")
    base = summary.get("baseline", {})
    for name, roles in summary.items():
        for role, rows in sorted(roles.items()):
            cpu = statistics.mean(r[0] for r in rows)
            ratio = ""
            if role in base:
                ratio = f"{cpu / max(statistics.mean(r[0] for r in base[role]), 1e-9):.2f}x"
            print(f"| {name} | {role} | {cpu:.2f} | {max(r[0] for r in rows):.2f} | "
                  f"{statistics.mean(r[1] for r in rows):.1f} | {max(r[1] for r in rows):.1f} "
                  f"| {ratio} |")  # fmt: skip


if __name__ == "__main__":
    main()
