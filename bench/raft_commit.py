"""Raft commit benchmark: 3 in-process managers (real Store, SQLite storage with fsync,
InMemoryNetwork) against a single-node LocalLog, side by side in the same run.

Prints, for small writes (one small object per batch) with 1 and with 64 concurrent
clients: writes/s and p50/p99 commit latency, at the log level (`Log.propose` of a
ready-made batch: what consensus costs) and through `Store.update` (the control path,
whose writers are serialised by the store's lock). Then leader failover with the default
timings: time from crashing the leader (its tasks cancelled, like kill -9) to the next
successful write, median of 10. `--timing` adds the measurements behind the default
timings (event-loop lateness with and without CPU hogs, SQLite fsync latency).

    .venv/bin/python bench/raft_commit.py [--seconds 2] [--repeat 3] [--failovers 10] [--timing]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec

from shoal.api.types import Service, ServiceSpec
from shoal.errors import Unavailable
from shoal.manager.raft import (
    InMemoryNetwork,
    RaftLog,
    RaftNodeConfig,
    SQLiteStorage,
)
from shoal.manager.state.changes import Batch, Change, encode_batch
from shoal.manager.state.locallog import LocalLog
from shoal.manager.state.store import Store, Tx


def small_batch(i: int) -> bytes:
    svc = Service(id=f"bench{i:020d}", spec=ServiceSpec(name=f"b{i}"))
    change = Change("create", "service", svc.id, msgspec.msgpack.encode(svc))
    return encode_batch(Batch("2024-01-01T00:00:00.000000Z", [change]))


@dataclass
class Result:
    writes: int
    seconds: float
    latencies: list[float]

    def row(self, label: str, clients: int) -> str:
        lat = sorted(self.latencies)
        p50 = lat[len(lat) // 2] * 1e3
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
        rate = self.writes / self.seconds
        return f"{label:<34} {clients:>7} {rate:>10.0f} {p50:>8.2f} {p99:>8.2f}"

    @property
    def rate(self) -> float:
        return self.writes / self.seconds


async def drive(write: Callable[[int], Awaitable[None]], clients: int, seconds: float) -> Result:
    latencies: list[float] = []
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await write(next(counter))
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Result(len(latencies), time.perf_counter() - start, latencies)


# --- the systems under test ---------------------------------------------------------------


class RaftCluster:
    def __init__(self, root: Path, size: int, config: RaftNodeConfig, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.net = InMemoryNetwork()
        self.config = config
        self.root = root
        self.voters = tuple(range(1, size + 1))
        self.stores: dict[int, Store] = {}
        self.logs: dict[int, RaftLog] = {}
        self.storages: dict[int, SQLiteStorage] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def start(self, i: int) -> None:
        store = Store()
        storage = SQLiteStorage.open(self.root / f"m{i}.db")
        if storage.is_empty:
            storage.bootstrap(self.voters)
        log = RaftLog.open(
            store,
            i,
            storage,
            self.net.transport(i),
            self.config,
            rng=random.Random(self.rng.getrandbits(64)),
        )
        store.attach(log)
        self.net.attach(i, log.node)
        self.stores[i], self.logs[i], self.storages[i] = store, log, storage
        self.tasks[i] = asyncio.create_task(log.run())

    async def crash(self, i: int) -> None:
        self.net.detach(i)
        self.tasks[i].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.tasks[i]
        await self.storages[i].aclose()
        del self.tasks[i]

    def leader(self) -> int | None:
        ready = [i for i in self.tasks if self.logs[i].node.leader_ready]
        return ready[0] if len(ready) == 1 else None

    async def wait_leader(self, timeout: float = 30.0) -> int:
        deadline = time.perf_counter() + timeout
        while (leader := self.leader()) is None:
            if time.perf_counter() > deadline:
                raise SystemExit("no leader elected")
            await asyncio.sleep(0.001)
        return leader

    async def close(self) -> None:
        for i in list(self.tasks):
            await self.crash(i)


_runs = itertools.count()


def create_one(store: Store, i: int) -> Callable[[Tx], None]:
    def fn(tx: Tx) -> None:
        tx.create("service", Service(id=f"upd{i:020d}", spec=ServiceSpec(name=f"u{i}")))

    return fn


async def bench_local(root: Path, clients: int, seconds: float, path: str) -> Result:
    store = Store()
    log = LocalLog(root / f"local-{next(_runs)}.db", store)
    store.attach(log)
    try:
        if path == "log":
            return await drive(lambda i: log.propose(small_batch(i)), clients, seconds)
        return await drive(lambda i: store.update(create_one(store, i)), clients, seconds)
    finally:
        log.close()


async def bench_raft(root: Path, size: int, clients: int, seconds: float, path: str) -> Result:
    cluster = RaftCluster(root / f"raft-{next(_runs)}", size, RaftNodeConfig())
    cluster.root.mkdir()
    for i in cluster.voters:
        cluster.start(i)
    try:
        leader = await cluster.wait_leader()
        log, store = cluster.logs[leader], cluster.stores[leader]
        if path == "log":
            return await drive(lambda i: log.propose(small_batch(i)), clients, seconds)
        return await drive(lambda i: store.update(create_one(store, i)), clients, seconds)
    finally:
        await cluster.close()


async def paired(
    root: Path, clients: int, seconds: float, path: str, repeat: int
) -> tuple[Result, Result]:
    """Baseline and Raft alternately, `repeat` times each; the median-rate run of each
    (the disk of a shared machine is noisy: alternating spreads the noise over both)."""
    local, raft = [], []
    for _ in range(repeat):
        local.append(await bench_local(root, clients, seconds, path))
        raft.append(await bench_raft(root, 3, clients, seconds, path))

    def median(runs: list[Result]) -> Result:
        return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]

    return median(local), median(raft)


async def failover_once(root: Path, seed: int) -> float:
    cluster = RaftCluster(root / f"failover-{seed}", 3, RaftNodeConfig(), seed=seed)
    cluster.root.mkdir()
    for i in cluster.voters:
        cluster.start(i)
    try:
        leader = await cluster.wait_leader()
        await cluster.logs[leader].propose(small_batch(0))
        t = time.perf_counter()
        await cluster.crash(leader)
        n = 1
        while True:
            new = cluster.leader()
            if new is not None:
                try:
                    await cluster.logs[new].propose(small_batch(n))
                    return time.perf_counter() - t
                except Unavailable:
                    n += 1
            await asyncio.sleep(0.001)
    finally:
        await cluster.close()


# --- timing measurements behind the defaults ----------------------------------------------


async def loop_lateness(interval: float, samples: int) -> list[float]:
    late = []
    for _ in range(samples):
        t = time.perf_counter()
        await asyncio.sleep(interval)
        late.append(time.perf_counter() - t - interval)
    return sorted(late)


def fsync_latency(root: Path, samples: int) -> list[float]:
    s = SQLiteStorage.open(root / "fsync.db")
    from shoal.raft import Entry, HardState

    lat = []
    for i in range(1, samples + 1):
        t = time.perf_counter()
        s.save(entries=[Entry(1, i, data=b"x" * 200)], hard_state=HardState(1, 0, i), sync=True)
        lat.append(time.perf_counter() - t)
    s.close()
    return sorted(lat)


def snapshot_cost() -> str:
    """What a leader's loop does synchronously at a snapshot (encode) or a follower's at
    a restore (load), for a store of 2,000 services and 10,000 tasks."""
    from shoal.api.types import ContainerSpec, Task, TaskSpec
    from shoal.manager.raft import encode_store, load_store

    template = TaskSpec(container_spec=ContainerSpec(image="busybox", args=["httpd", "-f"]))
    objects = {
        "service": [
            Service(id=f"s{i:024d}", spec=ServiceSpec(name=f"svc{i}", task_template=template))
            for i in range(2000)
        ],
        "task": [Task(id=f"t{i:024d}", service_id=f"s{i % 2000:024d}") for i in range(10000)],
    }
    store = Store()
    store.load(objects, 12000)
    t = time.perf_counter()
    data = encode_store(store)
    encode = time.perf_counter() - t
    t = time.perf_counter()
    load_store(Store(), data)
    load = time.perf_counter() - t
    return (
        f"store snapshot, 2k services + 10k tasks ({len(data) / 1e6:.1f} MB): "
        f"encode {encode * 1e3:.0f} ms, load {load * 1e3:.0f} ms"
    )


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] * 1e3


async def stability(root: Path, config: RaftNodeConfig, seconds: float, label: str) -> int:
    """Leader changes while 64 clients write under CPU hogs (the cluster is in one
    process, so its own load is part of the noise)."""
    cluster = RaftCluster(root / f"stability-{label}", 3, config, seed=7)
    cluster.root.mkdir()
    for i in cluster.voters:
        cluster.start(i)
    try:
        await cluster.wait_leader()
        start_term = max(cluster.logs[i].node.term for i in cluster.voters)
        stop = time.perf_counter() + seconds

        async def writer(k: int) -> None:
            n = k * 10**7
            while time.perf_counter() < stop:
                leader = cluster.leader()
                if leader is None:
                    await asyncio.sleep(0.01)
                    continue
                n += 1
                with contextlib.suppress(Unavailable):
                    await cluster.logs[leader].propose(small_batch(n))

        await asyncio.gather(*(writer(k) for k in range(64)))
        return max(cluster.logs[i].node.term for i in cluster.voters) - start_term
    finally:
        await cluster.close()


async def timing(root: Path) -> None:
    print("\n== measurements behind the default timings ==")
    idle = await loop_lateness(0.1, 100)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        loaded = await loop_lateness(0.1, 100)
        fsync_loaded = fsync_latency(root, 300)
        candidates = {
            "tick 100 ms x 10 (default)": RaftNodeConfig(),
            "tick 50 ms x 10": RaftNodeConfig(tick_interval=0.05),
            "tick 20 ms x 10": RaftNodeConfig(tick_interval=0.02),
        }
        changes = {
            k: await stability(root, c, 20, str(i)) for i, (k, c) in enumerate(candidates.items())
        }
    finally:
        for p in hogs:
            p.kill()
            p.wait()
    for label, v in (("idle", idle), ("3 CPU hogs on 2 cores", loaded)):
        print(
            f"event-loop lateness of a 100 ms sleep, {label:<22} p50 {pct(v, 0.5):6.2f} ms"
            f"  p99 {pct(v, 0.99):6.2f} ms  max {v[-1] * 1e3:6.2f} ms"
        )
    print(snapshot_cost())
    for k, v in changes.items():
        print(f"term changes in 20 s, 64 writers, 3 CPU hogs, {k:<27} {v}")
    print(
        f"SQLite commit with fsync (under the hogs)             p50 {pct(fsync_loaded, 0.5):6.2f}"
        f" ms  p99 {pct(fsync_loaded, 0.99):6.2f} ms  max {fsync_loaded[-1] * 1e3:6.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--timing", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-raft-bench-") as tmp:
        root = Path(tmp)
        print(
            "== small writes (one ~150-byte object per batch), fsync on; median of "
            f"{args.repeat} alternating {args.seconds:.0f} s runs =="
        )
        print(f"{'system':<34} {'clients':>7} {'writes/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        rates: dict[tuple[str, str, int], float] = {}
        for path, what in (("log", "Log.propose"), ("update", "Store.update")):
            for clients in (1, 64):
                local, raft = await paired(root, clients, args.seconds, path, args.repeat)
                print(local.row(f"LocalLog 1 node, {what}", clients))
                print(raft.row(f"Raft 3 managers, {what}", clients))
                rates[("local", path, clients)] = local.rate
                rates[("raft", path, clients)] = raft.rate
        for path in ("log", "update"):
            ratios = ", ".join(
                f"{c} client(s) {rates[('raft', path, c)] / rates[('local', path, c)]:.2f}"
                for c in (1, 64)
            )
            print(f"raft/local throughput ({path}): {ratios}")
        print(
            "\n== leader failover, default timings "
            f"(tick {RaftNodeConfig().tick_interval * 1e3:.0f} ms, elections after "
            f"{RaftNodeConfig().election_tick}-{2 * RaftNodeConfig().election_tick} ticks) =="
        )
        times = [await failover_once(root, seed) for seed in range(args.failovers)]
        print(
            f"crash leader -> next successful write: median {statistics.median(times):.2f} s"
            f" (min {min(times):.2f}, max {max(times):.2f}, n={len(times)});"
            " docker swarm's default election timeout: 10-20 s"
        )
        if args.timing:
            await timing(root)


if __name__ == "__main__":
    asyncio.run(main())
