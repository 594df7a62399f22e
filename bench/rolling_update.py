"""Issue 14: a 6-replica rolling update with default settings (parallelism 1, stop-first)
against `--update-parallelism 3 --update-order start-first`, side by side in one lab, under
load of new connections to every node and 2 keep-alive connections per node (a request
every 50 ms each); prints the time of each and the failed requests of both loads.

    python bench/rolling_update.py [--nodes 3] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from shoal.lab.lab import Lab
from shoal.lab.layout import CLIENT


def shoal(lab: Lab, *args: str) -> str:
    proc = lab.exec("h1", ["shoal", *args], capture=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"shoal {' '.join(args)}: {proc.stderr}")
    return str(proc.stdout)


def timed_update(lab: Lab, hosts: list[str], extra: list[str]) -> tuple[float, dict[str, object]]:
    """Seconds `service update --force` takes to converge, and the load's summary meanwhile."""
    targets = [f"{lab.address(h)}:8080" for h in hosts]
    argv = [sys.executable, "-m", "shoal.lab.load", "http", *targets, "--timeout", "3",
            "--concurrency", "8", "--duration", "300", "--keepalive", "2"]
    load = lab.popen(CLIENT, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        began = time.monotonic()
        shoal(lab, "service", "update", "--quiet", "--force", *extra, "web")
        took = time.monotonic() - began
        time.sleep(1)
    finally:
        out, _ = load.communicate(input="", timeout=60)
    summary: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return took, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    lab = Lab("bru")
    lab.down()
    try:
        lab.up(nodes=args.nodes)
        hosts = [f"h{i}" for i in range(1, args.nodes + 1)]
        shoal(lab, "service", "create", "--quiet", "--name", "web", "--replicas", "6",
              "--publish", "published=8080,target=80", "shoal", "whoami", "--port", "80")
        cases = {"default (1, stop-first)": ["--update-parallelism", "1",
                                              "--update-order", "stop-first"],
                 "3, start-first": ["--update-parallelism", "3",
                                    "--update-order", "start-first"]}
        results: dict[str, list[tuple[float, dict[str, object]]]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for name, extra in cases.items():  # interleaved: same machine load for both
                results[name].append(timed_update(lab, hosts, extra))
        base = min(t for t, _ in results["default (1, stop-first)"])
        for name, runs in results.items():
            best = min(t for t, _ in runs)
            failed = sum(int(str(s["failed"])) for _, s in runs)
            total = sum(int(str(s["total"])) for _, s in runs)
            kept = [s["keepalive"] for _, s in runs]
            k_total = sum(int(k["requests"]) for k in kept)  # type: ignore[index]
            k_failed = sum(int(k["failed"]) for k in kept)  # type: ignore[index]
            print(f"{name:26s} update {best:6.2f}s  ratio {best / base:4.2f}  "
                  f"requests {total}  failed {failed}  keep-alive {k_total} failed {k_failed}")
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
