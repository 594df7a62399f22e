"""A simulated network for gossip cores (pure, seeded): the FakeNetwork of gossip.

Every tick, each running core ticks, then the packets due are delivered; outputs are routed
with a delay drawn from `delay` (ticks) and dropped with probability `loss` (UDP only: a
push-pull is TCP and fails only across a partition or to a crashed node). Each packet goes
through the real codec and must fit in the core's `max_packet`. Crashes, restarts and
partitions are set between steps. The same seed gives the same run, tick by tick.

Every tick also checks the core's `next_due()` promise, which the real driver relies on to
sleep between due ticks: a tick before the tick the core named must have no outputs and no
events (`AssertionError` otherwise). `quiet_ticks` counts the ticks the driver could skip.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from shoal.gossip.codec import decode_packet, decode_push_pull, encode_packet, encode_push_pull
from shoal.gossip.core import MemberEvent, SendPacket, Swim
from shoal.gossip.members import RandomSource
from shoal.gossip.messages import PushPull

__all__ = ["NetStats", "SimNetwork"]


@dataclass
class NetStats:
    packets: int = 0
    dropped: int = 0
    bytes: int = 0
    push_pulls: int = 0
    quiet_ticks: int = 0  # ticks before a core's `next_due()`: the driver sleeps through them
    core_ticks: int = 0


@dataclass(order=True)
class _Due:
    at: int
    seq: int
    dst: str = field(compare=False)
    deliver: Callable[[Swim], None] = field(compare=False)
    src: str = field(compare=False, default="")


class SimNetwork:
    def __init__(
        self, rng: RandomSource, loss: float = 0.0, delay: tuple[int, int] = (0, 1)
    ) -> None:
        self.rng = rng
        self.loss = loss
        self.delay = delay
        self.now = 0
        self.nodes: dict[str, Swim] = {}  # by address
        self.crashed: set[str] = set()
        self.stats = NetStats()
        self.events: list[tuple[int, str, MemberEvent]] = []  # (tick, observer id, event)
        self._groups: list[set[str]] | None = None
        self._queue: list[_Due] = []
        self._seq = 0

    # -- topology -----------------------------------------------------------------------
    def add(self, core: Swim) -> None:
        self.nodes[core.addr] = core
        self.crashed.discard(core.addr)
        self._route(core)

    def crash(self, addr: str) -> None:
        self.crashed.add(addr)

    def partition(self, *groups: set[str]) -> None:
        """Only members of the same group reach each other (addresses not listed: alone)."""
        self._groups = [set(g) for g in groups]

    def heal(self) -> None:
        self._groups = None

    def reachable(self, a: str, b: str) -> bool:
        if a in self.crashed or b in self.crashed or b not in self.nodes:
            return False
        if self._groups is None:
            return True
        return any(a in g and b in g for g in self._groups)

    def running(self) -> list[Swim]:
        return [c for a, c in sorted(self.nodes.items()) if a not in self.crashed]

    # -- time ---------------------------------------------------------------------------
    def step(self) -> None:
        self.now += 1
        for core in self.running():
            wake = core.next_due()
            core.tick()
            self.stats.core_ticks += 1
            if core.now < wake:
                self._check_quiet(core, wake)
            self._route(core)
        while self._queue and self._queue[0].at <= self.now:
            due = heapq.heappop(self._queue)
            if not self.reachable(due.src, due.dst):
                self.stats.dropped += 1
                continue
            core = self.nodes[due.dst]
            due.deliver(core)
            self._route(core)

    def run(self, ticks: int, until: Callable[[], bool] | None = None) -> int:
        """Step up to `ticks` times, stopping early once `until()` holds; ticks taken."""
        for i in range(ticks):
            if until is not None and until():
                return i
            self.step()
        return ticks

    def _check_quiet(self, core: Swim, due: int) -> None:
        outputs, events = core.take_outputs(), core.take_events()
        if outputs or events:
            raise AssertionError(
                f"{core.node_id}: tick {core.now} before its next_due {due} had "
                f"{len(outputs)} output(s) and {len(events)} event(s)"
            )
        self.stats.quiet_ticks += 1

    # -- routing ------------------------------------------------------------------------
    def _route(self, core: Swim) -> None:
        for ev in core.take_events():
            self.events.append((self.now, core.node_id, ev))
        for out in core.take_outputs():
            if isinstance(out, SendPacket):
                self._send_packet(core, out)
            else:
                self._start_push_pull(core, out.addr, core.push_pull_state(out.join))

    def _send_packet(self, core: Swim, out: SendPacket) -> None:
        data = encode_packet(out.packet)
        if len(data) > core.config.max_packet:
            raise AssertionError(f"{core.node_id} built a {len(data)}-byte packet")
        self.stats.packets += 1
        self.stats.bytes += len(data)
        if self.rng.random() < self.loss:
            self.stats.dropped += 1
            return
        packet = decode_packet(data)
        self._schedule(core.addr, out.addr, lambda dst: dst.step(packet))

    def _start_push_pull(self, core: Swim, addr: str, state: PushPull) -> None:
        self.stats.push_pulls += 1
        sent = decode_push_pull(encode_push_pull(state))
        src = core.addr

        def serve(dst: Swim) -> None:
            reply = decode_push_pull(encode_push_pull(dst.handle_push_pull(sent)))
            self._schedule(dst.addr, src, lambda back: back.merge_push_pull(reply))

        self._schedule(src, addr, serve)

    def _schedule(self, src: str, dst: str, deliver: Callable[[Swim], None]) -> None:
        self._seq += 1
        at = self.now + self.rng.randint(*self.delay)
        heapq.heappush(self._queue, _Due(at, self._seq, dst, deliver, src))
