"""`shoal service ls` latency: this checkout's CLI against a baseline CLI (default: the main
checkout's, i.e. before the lazy imports) and the docker CLI, same daemon, same run,
interleaved so the machine's load hits all alike. Median of --runs wall-clock times of the
whole process.

    .venv/bin/python bench/cli_latency.py --host unix:///run/shoal-lab/h1.sock \
        [--baseline /work/main/.venv/bin/shoal] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--baseline", default="/work/main/.venv/bin/shoal")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    here = str(Path(sys.executable).parent / "shoal")
    env = {**os.environ, "SHOAL_HOST": args.host, "DOCKER_HOST": args.host}
    clis = {"this checkout": [here, "service", "ls"],
            "baseline": [args.baseline, "service", "ls"]}
    docker = shutil.which("docker")
    if docker:
        clis["docker CLI"] = [docker, "service", "ls"]
    times: dict[str, list[float]] = {name: [] for name in clis}
    for _ in range(args.runs):
        for name, argv in clis.items():
            times[name].append(timed(argv, env))
    base = statistics.median(times["baseline"])
    print("| CLI | `service ls` median ms | min ms | vs baseline |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med * 1000:.0f} | {min(ts) * 1000:.0f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
