"""One orchestrator pass over a 300-replica service: the pass reading through shallow
copies (`Tx.scan`, this tree) against the same pass with a deep clone of every object
(what `Tx.list` gives, and what every pass did before), same invocation, CPU time.

    .venv/bin/python bench/reconcile_pass.py [--replicas 300] [--rounds 20]

The tasks carry a realistic spec (image by digest, args, env, labels, a mount, limits,
placement, a network, a log driver): a deep clone's cost grows with the spec, a shallow
copy's does not. Pure: a store on a local log in a temporary directory, no lab.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shoal.api.codec import clone  # noqa: E402
from shoal.api.types import TaskSpec  # noqa: E402
from shoal.manager.state.store import Tx  # noqa: E402
from tests.unit.manager.orchestrator.rollout import Cluster, spec  # noqa: E402

TEMPLATE = {
    "ContainerSpec": {"Image": "198.18.0.3:5000/busybox:burst@sha256:" + "a" * 64,
                      "Args": ["httpd", "-f", "-p", "80"],
                      "Env": [f"VAR{i}=value{i}" for i in range(8)],
                      "Labels": {f"com.example.l{i}": "v" for i in range(4)},
                      "Mounts": [{"Type": "volume", "Source": "data", "Target": "/data"}]},
    "Resources": {"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 268_435_456}},
    "RestartPolicy": {"Condition": "any", "MaxAttempts": 0},
    "Placement": {"Constraints": ["node.role==worker"]},
    "Networks": [{"Target": "net1", "Aliases": ["web"]}],
    "LogDriver": {"Name": "json-file", "Options": {"max-size": "10m"}},
}  # fmt: skip


def pass_ms(c: Cluster, rounds: int) -> float:
    began = time.process_time()
    for _ in range(rounds):
        c.orch._pass(Tx(c.store._tables, c.store._names), c.now, [])
    return (time.process_time() - began) / rounds * 1e3


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-passbench-") as tmp:
        c = Cluster(Path(tmp), nodes=5)
        service = spec(replicas=args.replicas)
        service.task_template = msgspec.convert(TEMPLATE, TaskSpec)
        await c.start(service)
        shallow = Tx.scan
        deep = pass_ms_with(c, args.rounds, lambda self, kind: [clone(o) for o in self._all(kind)])
        this = pass_ms_with(c, args.rounds, shallow)
    print(f"orchestrator pass over {args.replicas} tasks, CPU ms per pass (mean of "
          f"{args.rounds})")
    print(f"  deep clones (baseline)   {deep:6.2f}")
    print(f"  shallow copies (this)    {this:6.2f}   {this / deep:.2f}x")


def pass_ms_with(c: Cluster, rounds: int, scan: object) -> float:
    saved = Tx.scan
    Tx.scan = scan  # type: ignore[method-assign,assignment]
    try:
        return pass_ms(c, rounds)
    finally:
        Tx.scan = saved  # type: ignore[method-assign]


if __name__ == "__main__":
    asyncio.run(main())
