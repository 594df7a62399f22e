"""Gossip convergence benchmark: how fast an endpoint change reaches every node, and how
fast a dead node's endpoints vanish everywhere, for N = 5, 20, 50.

Two parts, one invocation:

* simulated (seeded, `shoal.gossip.simnet`, 100 ms ticks, 1% loss, 0-100 ms one-way delay):
  shoal's SWIM gossip against a naive all-to-all model run on the same simulated network
  (every node sends a heartbeat carrying its entries to every other node each second,
  changes are sent to everyone at once, a node silent for 4 s is dead). Figures: ticks to
  reach all nodes (median and max over repetitions), the same in simulated seconds, the
  packets each node sends per second, and the wall time the simulation took.
* real sockets (`--real`, loopback 127.0.0.x, default timings): the same two figures in
  wall-clock seconds with `GossipNode`s in one process.

    .venv/bin/python bench/gossip_convergence.py [--sizes 5,20,50] [--reps 5] [--real]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shoal.gossip.core import Swim
from shoal.gossip.crypto import Keyring
from shoal.gossip.endpoints import EndpointEntry
from shoal.gossip.members import MemberStatus
from shoal.gossip.node import GossipNode, GossipOptions
from shoal.gossip.simnet import SimNetwork

TICK = 0.1  # seconds per tick
LOSS = 0.01
DELAY = (0, 1)


@dataclass
class Result:
    change: list[int] = field(default_factory=list)  # ticks
    dead: list[int] = field(default_factory=list)
    packets_per_node_s: float = 0.0
    wall: float = 0.0


def entry(node_id: str, task: str) -> EndpointEntry:
    return EndpointEntry("svc", task, node_id, "198.19.0.2", True)


# -- shoal's gossip, simulated ------------------------------------------------------------
def swim_run(n: int, reps: int, seed: int) -> Result:
    started = time.perf_counter()
    res = Result()
    net = SimNetwork(Random(seed), loss=LOSS, delay=DELAY)
    cores = [Swim(f"n{i:02d}", f"10.0.{i // 200}.{i % 200 + 1}:7946", Random(seed + i))
             for i in range(n)]
    for c in cores:
        net.add(c)
    for c in cores[1:]:
        c.join([cores[0].addr])
    net.run(3000, lambda: all(c.n() == n for c in cores))
    steady = net.stats.packets
    net.run(300)
    res.packets_per_node_s = (net.stats.packets - steady) / n / (300 * TICK)
    rng = Random(seed)
    for r in range(reps):
        owner = rng.choice(net.running())
        owner.endpoints.set_local(entry(owner.node_id, f"t{r}"))
        res.change.append(net.run(3000, lambda r=r: all(
            any(e.task_id == f"t{r}" for e in c.endpoints.entries()) for c in net.running())))
    for _ in range(min(reps, n - 2)):
        victim = rng.choice(net.running()[1:])
        victim.endpoints.set_local(entry(victim.node_id, "victim"))
        net.run(3000, lambda v=victim: all(
            any(e.node_id == v.node_id for e in c.endpoints.entries()) for c in net.running()))
        net.crash(victim.addr)
        res.dead.append(net.run(5000, lambda v=victim: all(
            all(e.node_id != v.node_id for e in c.endpoints.entries())
            for c in net.running())))
    res.wall = time.perf_counter() - started
    return res


# -- the baseline: all-to-all heartbeats and direct updates --------------------------------
class AllToAll:
    HEARTBEAT = 10  # ticks
    TIMEOUT = 40  # ticks of silence before an observer drops a node

    def __init__(self, n: int, rng: Random) -> None:
        self.n, self.rng, self.now, self.packets = n, rng, 0, 0
        self.crashed: set[int] = set()
        self.own: list[set[str]] = [set() for _ in range(n)]
        self.view: list[dict[int, set[str]]] = [{} for _ in range(n)]
        self.heard: list[dict[int, int]] = [dict.fromkeys(range(n), 0) for _ in range(n)]
        self.queue: list[tuple[int, int, int, int, frozenset[str]]] = []
        self.seq = 0
        self.phase = [rng.randrange(self.HEARTBEAT) for _ in range(n)]

    def send_all(self, src: int) -> None:
        for dst in range(self.n):
            if dst == src:
                continue
            self.packets += 1
            if self.rng.random() < LOSS:
                continue
            self.seq += 1
            at = self.now + self.rng.randint(*DELAY)
            heapq.heappush(self.queue, (at, self.seq, src, dst, frozenset(self.own[src])))

    def set(self, node: int, task: str) -> None:
        self.own[node].add(task)
        self.send_all(node)

    def step(self) -> None:
        self.now += 1
        for i in range(self.n):
            if i not in self.crashed and self.now % self.HEARTBEAT == self.phase[i]:
                self.send_all(i)
        while self.queue and self.queue[0][0] <= self.now:
            _, _, src, dst, entries = heapq.heappop(self.queue)
            if dst in self.crashed:
                continue
            self.heard[dst][src] = self.now
            self.view[dst][src] = set(entries)
        for i in range(self.n):
            for j in list(self.view[i]):
                if self.now - self.heard[i][j] > self.TIMEOUT:
                    del self.view[i][j]

    def run(self, limit: int, until: object) -> int:
        for t in range(limit):
            if until():  # type: ignore[operator]
                return t
            self.step()
        return limit

    def live(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.crashed]


def baseline_run(n: int, reps: int, seed: int) -> Result:
    started = time.perf_counter()
    res = Result()
    m = AllToAll(n, Random(seed))
    m.run(50, lambda: False)
    before = m.packets
    m.run(300, lambda: False)
    res.packets_per_node_s = (m.packets - before) / n / (300 * TICK)
    rng = Random(seed)

    def everyone_has(owner: int, task: str) -> bool:
        return all(i == owner or task in m.view[i].get(owner, set()) for i in m.live())

    for r in range(reps):
        owner = rng.choice(m.live())
        m.set(owner, f"t{r}")
        res.change.append(m.run(3000, lambda o=owner, r=r: everyone_has(o, f"t{r}")))
    for _ in range(min(reps, n - 2)):
        victim = rng.choice(m.live()[1:])
        m.set(victim, "victim")
        m.run(3000, lambda v=victim: everyone_has(v, "victim"))
        m.crashed.add(victim)
        res.dead.append(m.run(5000, lambda v=victim: all(v not in m.view[i] for i in m.live())))
    res.wall = time.perf_counter() - started
    return res


# -- real sockets ---------------------------------------------------------------------------
async def real_run(n: int) -> tuple[float, float, float]:
    """(join, change, dead) wall seconds with n GossipNodes on 127.0.x.y, default timings."""
    key = b"\x07" * 32
    nodes = [
        GossipNode(GossipOptions(f"n{i:02d}", bind_host=f"127.0.{1 + i // 200}.{i % 200 + 1}",
                                 port=0), Keyring(key))
        for i in range(n)
    ]
    loop = asyncio.get_running_loop()

    async def until(cond: object, timeout: float = 120.0) -> float:
        t0 = loop.time()
        while not cond():  # type: ignore[operator]
            if loop.time() - t0 > timeout:
                raise TimeoutError
            await asyncio.sleep(0.005)
        return loop.time() - t0

    async with asyncio.TaskGroup() as tg:
        for node in nodes:
            tg.create_task(node.run())
        for node in nodes:
            await node.started()
        t0 = loop.time()
        await asyncio.gather(*(node.join([nodes[0].addr]) for node in nodes[1:]))
        await until(lambda: all(
            sum(m.status is MemberStatus.ALIVE for m in node.members()) == n for node in nodes))
        joined = loop.time() - t0
        nodes[1].table.set(entry(nodes[1].options.node_id, "t"))
        change = await until(lambda: all(node.table.entries() for node in nodes))
        victim = nodes[2]
        victim.table.set(entry(victim.options.node_id, "v"))
        await until(lambda: all(len(node.table.entries()) == 2 for node in nodes))
        await victim.stop(leave=False)
        rest = [node for node in nodes if node is not victim]
        dead = await until(lambda: all(
            all(e.node_id != victim.options.node_id for e in node.table.entries())
            for node in rest))
        for node in rest:
            await node.stop(leave=False)
    return joined, change, dead


def fmt(ticks: list[int]) -> str:
    med = statistics.median(ticks)
    return f"{med:6.0f} / {max(ticks):5d} ticks ({med * TICK:5.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5,20,50")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--real", action="store_true", help="also measure real sockets")
    args = parser.parse_args()
    logging.getLogger("shoal.gossip").setLevel(logging.ERROR)  # a crashed node's refusals
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"simulated: tick {TICK * 1000:.0f} ms, loss {LOSS:.0%}, one-way delay "
          f"{DELAY[0]}-{DELAY[1]} ticks; median / max over {args.reps} repetitions")
    for n in sizes:
        ours = swim_run(n, args.reps, args.seed)
        base = baseline_run(n, args.reps, args.seed)
        print(f"\nN={n}")
        for name, r in (("swim gossip", ours), ("all-to-all", base)):
            print(f"  {name:12s} change everywhere {fmt(r.change)}   dead node's entries "
                  f"gone {fmt(r.dead)}   {r.packets_per_node_s:6.1f} packets/node/s   "
                  f"wall {r.wall:5.2f} s")
        ratio_c = statistics.median(ours.change) / max(1, statistics.median(base.change))
        ratio_d = statistics.median(ours.dead) / max(1, statistics.median(base.dead))
        ratio_p = ours.packets_per_node_s / base.packets_per_node_s
        print(f"  ratio gossip/all-to-all: change {ratio_c:.2f}x, dead {ratio_d:.2f}x, "
              f"packets per node {ratio_p:.2f}x")
    if args.real:
        print("\nreal sockets on loopback (default timings: 100 ms ticks, probe every 1 s)")
        for n in sizes:
            joined, change, dead = asyncio.run(real_run(n))
            print(f"  N={n:3d}: all joined {joined:6.2f} s   change everywhere {change:6.2f} s"
                  f"   dead node's entries gone {dead:6.2f} s")


if __name__ == "__main__":
    main()
