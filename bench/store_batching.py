"""Store writes: one-lock commits (the baseline, as before issue 13) against group commits,
side by side in one run, on the real SQLite-backed LocalLog (fsync on) of this machine.

    .venv/bin/python bench/store_batching.py [--seconds 3] [--clients 1,64]

For each client count: writes/s and p50/p99 latency of `Store.update` creating one small
object, for the baseline and for the shipped store, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shoal.api.timefmt import now_rfc3339
from shoal.api.types import Secret, SecretSpec
from shoal.manager.state.changes import encode_batch
from shoal.manager.state.locallog import LocalLog
from shoal.manager.state.store import Store, Tx, new_id

T = TypeVar("T")


class OneLockStore(Store):
    """The write path before group commits: one transaction per lock hold, one entry each."""

    async def update(self, fn: Any) -> Any:
        assert self._log is not None
        async with self._lock:
            tx = Tx(self._tables)
            result = fn(tx)
            batch = tx.batch(now_rfc3339())
            if batch is not None:
                await self._log.propose(encode_batch(batch))
            return result


async def _load(store: Store, clients: int, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    end = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < end:
            secret = Secret(id=new_id(), spec=SecretSpec(name=new_id(), data="eA=="))
            start = time.monotonic()
            await store.update(lambda tx, s=secret: tx.create("secret", s))
            latencies.append(time.monotonic() - start)

    await asyncio.gather(*(client() for _ in range(clients)))
    return len(latencies), latencies


def _run(cls: type[Store], root: Path, clients: int, seconds: float) -> tuple[float, float, float]:
    store = cls()
    log = LocalLog(root / f"{cls.__name__}-{clients}.db", store)
    log.restore()
    store.attach(log)
    writes, lat = asyncio.run(_load(store, clients, seconds))
    lat.sort()
    return writes / seconds, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", default="1,64")
    args = parser.parse_args()
    print("| store | clients | writes/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for clients in (int(c) for c in args.clients.split(",")):
            rows = {}
            for cls in (OneLockStore, Store):
                rows[cls] = _run(cls, Path(tmp), clients, args.seconds)
                rate, p50, p99 = rows[cls]
                label = "baseline (one lock)" if cls is OneLockStore else "group commit"
                print(f"| {label} | {clients} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |")
            ratio = rows[Store][0] / rows[OneLockStore][0]
            print(f"| ratio | {clients} | {ratio:.2f}x | | |")


if __name__ == "__main__":
    main()
