"""Jepsen-style: clients create and update services through the real control API while
the leader is crashed (its tasks cancelled wherever they are, like kill -9) and
restarted from its file, again and again (and, in the mixed runs, while the network
drops messages and partitions, and snapshots are taken every 30 entries). Afterwards
every acknowledged write is present on every manager, the replicas are identical, and
no acknowledged update was lost or reverted."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from shoal.errors import Unavailable
from shoal.manager.controlapi.services import create_service, update_service
from tests.unit.manager.raft.cluster import FAST, Cluster, services, spec


@dataclass
class Client:
    name: str
    acked: dict[str, str] = field(default_factory=dict)  # service -> last acked image
    attempted: dict[str, list[str]] = field(default_factory=dict)  # every image tried
    ambiguous: set[str] = field(default_factory=set)  # creations that may have happened
    writes: int = 0


async def client_loop(c: Cluster, cl: Client, rng: random.Random, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        leader = c.leader()
        if leader is None:
            await asyncio.sleep(0.005)
            continue
        store = leader.store
        try:
            if cl.acked and rng.random() < 0.5:
                name = rng.choice(sorted(cl.acked))
                svc = services(leader).get(name)
                if svc is None:
                    continue  # this replica is behind its own acked write? checked later
                image = f"img{n}"
                n += 1
                cl.attempted[name].append(image)
                await update_service(store, svc.id, svc.version.index, spec(name, image))
                cl.acked[name] = image
            else:
                name = f"{cl.name}-{n}"
                n += 1
                cl.attempted[name] = ["busybox"]
                cl.ambiguous.add(name)
                await create_service(store, spec(name))
                cl.ambiguous.discard(name)
                cl.acked[name] = "busybox"
            cl.writes += 1
        except Unavailable:
            pass  # NotLeader included: the write may or may not have happened


async def crash_leaders(c: Cluster, rng: random.Random, rounds: int) -> None:
    """Crash the leader (now and then another manager) and restart it from its file."""
    for _ in range(rounds):
        leader = await c.wait_leader(15)
        await asyncio.sleep(rng.uniform(0.02, 0.25))
        victim = leader if rng.random() < 0.8 else rng.choice(c.up())
        await c.crash(victim.id)
        await asyncio.sleep(rng.uniform(0.0, 0.2))
        c.start(victim.id)


async def mixed_faults(c: Cluster, rng: random.Random, rounds: int) -> None:
    """Crashes, partitions and one-way cuts over a lossy network."""
    c.net.drop_rate = 0.03
    for _ in range(rounds):
        await asyncio.sleep(rng.uniform(0.02, 0.3))
        roll, ids = rng.random(), list(c.managers)
        if roll < 0.5:
            leader = c.leader()
            victim = leader if leader is not None and rng.random() < 0.7 else rng.choice(c.up())
            await c.crash(victim.id)
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            c.start(victim.id)
            continue
        if roll < 0.8:
            rng.shuffle(ids)
            k = rng.randint(1, len(ids) // 2)
            c.net.partition(set(ids[:k]), set(ids[k:]))
        else:
            a, b = rng.sample(ids, 2)
            c.net.cut(a, b, both=False)
        await asyncio.sleep(rng.uniform(0.1, 0.5))
        c.net.heal()
    c.net.drop_rate = 0.0


def check(c: Cluster, clients: list[Client], seed: int) -> None:
    final = [services(m) for m in c.up()]
    assert len(final) == len(c.managers)
    assert all(m.state() == c.up()[0].state() for m in c.up()), "replicas differ"
    for cl in clients:
        assert cl.writes > 0
        for name, image in cl.acked.items():
            for got in final:
                assert name in got, f"acked service {name} lost (seed {seed})"
                tried = cl.attempted[name]
                # The last acked image, or a later attempt whose answer was lost.
                later = tried[tried.index(image) :]
                assert got[name].spec.task_template.container_spec.image in later
        for name in set(final[0]) - set(cl.acked) - cl.ambiguous:
            assert not name.startswith(cl.name + "-"), f"{name} was never written"


@pytest.mark.parametrize(
    ("size", "seed", "faults"),
    [(3, 11, "crash-leaders"), (5, 12, "crash-leaders"), (3, 13, "mixed"), (5, 14, "mixed")],
)
async def test_acknowledged_writes_survive_crashes(
    tmp_path: Path, size: int, seed: int, faults: str
) -> None:
    rng = random.Random(seed)
    config = FAST if faults == "crash-leaders" else replace(FAST, snapshot_every=30, keep_tail=5)
    c = Cluster(tmp_path, size, seed=seed, config=config)
    c.start_all()
    stop = asyncio.Event()
    clients = [Client(f"c{i}") for i in range(3)]
    try:
        await c.wait_leader()
        loops = [
            asyncio.create_task(client_loop(c, cl, random.Random(rng.getrandbits(64)), stop))
            for cl in clients
        ]
        if faults == "crash-leaders":
            await crash_leaders(c, rng, rounds=6)
        else:
            await mixed_faults(c, rng, rounds=10)
        stop.set()
        await asyncio.gather(*loops)
        await c.wait_converged(30)
        check(c, clients, seed)
    finally:
        stop.set()
        await c.close()
