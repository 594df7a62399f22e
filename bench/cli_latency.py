"""`shoal service ls` latency: this checkout's CLI against a baseline checkout's CLI and the
docker CLI, same daemon, same run, interleaved so the machine's load hits all alike.
Median of --runs wall-clock times of the whole process, and its CPU time (user + system of
the child, which the machine's load inflates less than the wall clock).

    .venv/bin/python bench/cli_latency.py --host unix:///run/shoal-lab/h1.sock \
        [--baseline-tree /work/wt-fast-base] [--runs 15]

Each shoal CLI runs as `python -m shoal` with PYTHONPATH and cwd at its own tree (cwd too:
`-m` puts it first on sys.path), so the baseline really runs the baseline's code; "shoal
command" is the venv's `shoal` entry point (this checkout's code, through its editable
install). Both trees are byte-compiled first, as a user's first run leaves them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--baseline-tree", type=Path, default=Path("/work/wt-fast-base"))
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = {**os.environ, "SHOAL_HOST": args.host, "DOCKER_HOST": args.host}
    py = [sys.executable, "-m", "shoal", "service", "ls"]
    clis: dict[str, tuple[list[str], dict[str, str], Path]] = {
        "this checkout": (py, {**env, "PYTHONPATH": str(HERE)}, HERE),
        "baseline": (py, {**env, "PYTHONPATH": str(args.baseline_tree)}, args.baseline_tree),
    }
    script = Path(sys.executable).parent / "shoal"  # the command a user types (venv's entry point)
    if script.exists():
        clis["shoal command"] = ([str(script), "service", "ls"], env, HERE)
    # A user's CLI runs from the bytecode its first run wrote; where PYTHONDONTWRITEBYTECODE
    # is set (as on the team's machines) every run would compile the CLI's modules again.
    for tree in (HERE, args.baseline_tree):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "shoal")],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    docker = shutil.which("docker")
    if docker:
        clis["docker CLI"] = ([docker, "service", "ls"], env, HERE)
    walls: dict[str, list[float]] = {name: [] for name in clis}
    cpus: dict[str, list[float]] = {name: [] for name in clis}
    load = os.getloadavg()
    for _ in range(args.runs):
        for name, (argv, cli_env, cwd) in clis.items():
            wall, cpu = timed(argv, cli_env, cwd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    base = statistics.median(walls["baseline"])
    base_cpu = statistics.median(cpus["baseline"])
    print(f"{args.runs} runs each, interleaved; load average {load[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")  # fmt: skip
    print("| CLI | median ms | min ms | vs baseline | CPU median ms | CPU vs baseline |")
    print("|---|---|---|---|---|---|")
    for name, ts in walls.items():
        med, cpu = statistics.median(ts), statistics.median(cpus[name])
        print(f"| {name} | {med * 1000:.0f} | {min(ts) * 1000:.0f} | {med / base:.2f}x "
              f"| {cpu * 1000:.0f} | {cpu / base_cpu:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
