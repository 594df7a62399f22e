"""Scheduler throughput on simulated nodes: placements per second of one scheduling pass,
this tree's scheduler against the baseline (main's at a62bf31, `pick_node` per task), same
invocation, CPU time (`time.process_time`), pure (no store, no I/O).

    .venv/bin/python bench/scheduler.py [--nodes 1000] [--replicas 5000] [--rounds 3]

The baseline's two modules (scheduler.py, filters.py) are taken with `git show` into a
temporary package at bench time. Each case is one replicated service of `--replicas`
pending tasks on `--nodes` ready nodes, with 2 tasks per node already running:
  filters off   no constraint, no reservation, no max replicas
  filters on    nodes with labels and resources (some down, drained, or without resources);
                the service constrained (`node.labels.zone!=c`), reserving 0.5 CPU and
                1 GiB a task, at most 20 a node
Both schedulers get identical copies of the cluster; the bench checks they place every
task on the same node (it stops if not). The baseline, O(nodes x filters) a placement, runs
`--baseline-replicas` tasks (its rate does not depend on the count) to keep the bench short.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shoal.api.container import ResourceRequirements, Resources  # noqa: E402
from shoal.api.types import Placement, Task, TaskSpec, TaskStatusInfo  # noqa: E402
from shoal.manager.scheduler.scheduler import Scheduler  # noqa: E402
from tests.unit.manager.schedsim import GIB, FakeTx, make_nodes, outcome  # noqa: E402

BASELINE = "a62bf31"


def load_baseline(tmp: Path) -> Callable[[Any], None]:
    """main's scheduler at BASELINE, from git, as an importable package."""
    pkg = tmp / "sched_baseline"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("scheduler.py", "filters.py"):
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BASELINE}:shoal/manager/scheduler/{name}"],
            check=True, capture_output=True, text=True,
        ).stdout
        text = text.replace("shoal.manager.scheduler.filters", "sched_baseline.filters")
        (pkg / name).write_text(text)
    sys.path.insert(0, str(tmp))
    module = importlib.import_module("sched_baseline.scheduler")
    return lambda tx: module.Scheduler._pass(None, tx)


def current(tx: Any) -> None:
    Scheduler._pass(None, tx)  # type: ignore[arg-type]  # the pass keeps no state of its own


def cluster(nodes: int, replicas: int, filters: bool, seed: int = 13) -> FakeTx:
    rng = random.Random(seed)
    node_list = make_nodes(rng, nodes, varied=filters)
    if filters:
        spec = TaskSpec(
            placement=Placement(constraints=["node.labels.zone!=c"], max_replicas=20),
            resources=ResourceRequirements(
                reservations=Resources(nano_cpus=5 * 10**8, memory_bytes=GIB)),
        )
    else:
        spec = TaskSpec()
    tasks = [Task(id=f"t{slot}", service_id="web", slot=slot, spec=spec, desired_state="running",
                  status=TaskStatusInfo(state="pending")) for slot in range(1, replicas + 1)]
    for k in range(2 * nodes):  # some work already placed, of other services
        tasks.append(Task(id=f"p{k}", service_id=f"other{k % 7}", slot=1, spec=TaskSpec(),
                          node_id=node_list[k % nodes].id, desired_state="running",
                          status=TaskStatusInfo(state="running")))
    return FakeTx(node_list, tasks)


def measure(run: Callable[[Any], None], nodes: int, replicas: int, filters: bool,
            rounds: int) -> tuple[float, int, list[tuple[str, str, str, str]]]:
    """(placements per CPU second, median of `rounds`; placements; outcome of the last)."""
    rates, placed, result = [], 0, []
    for _ in range(rounds):
        tx = cluster(nodes, replicas, filters)
        t0 = time.process_time()
        run(tx)
        cpu = time.process_time() - t0
        placed = sum(1 for t in tx.tables["task"] if t.status.state == "assigned")
        rates.append(placed / cpu if cpu > 0 else float("inf"))
        result = outcome(tx.tables["task"])
    return statistics.median(rates), placed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=5000)
    parser.add_argument("--baseline-replicas", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shoal-schedbench-") as tmp:
        baseline = load_baseline(Path(tmp))
        print(f"scheduler pass, {args.nodes} simulated nodes, one replicated service; "
              f"placements per CPU second, median of {args.rounds}")
        head = (f"{'filters':<9}{'scheduler':<22}{'replicas':>9}{'placed':>8}"
                f"{'placements/s':>14}{'x baseline':>12}")
        print(head)
        print("-" * len(head))
        for filters in (False, True):
            label = "on" if filters else "off"
            base_rate, base_placed, base_out = measure(
                baseline, args.nodes, args.baseline_replicas, filters, args.rounds)
            # the same cluster and count through this tree's: every task on the same node
            _, _, same_out = measure(current, args.nodes, args.baseline_replicas, filters, 1)
            if same_out != base_out:
                raise SystemExit(f"filters {label}: placements differ from the baseline's")
            rate, placed, _ = measure(current, args.nodes, args.replicas, filters, args.rounds)
            print(f"{label:<9}{f'baseline ({BASELINE})':<22}{args.baseline_replicas:>9}"
                  f"{base_placed:>8}{base_rate:>14,.0f}{1.0:>12.2f}")
            print(f"{label:<9}{'this tree':<22}{args.replicas:>9}{placed:>8}{rate:>14,.0f}"
                  f"{rate / base_rate:>12.1f}")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nplacements identical to the baseline's on the {args.baseline_replicas}-task "
          f"clusters; bench took {time.monotonic() - start:.0f} s; load average {load} on "
          f"{os.cpu_count()} CPUs (CPU time, so the load matters less than for wall time)")


if __name__ == "__main__":
    main()
