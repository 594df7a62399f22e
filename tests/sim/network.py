"""A simulated network: per-message delay (so reordering), loss, duplication, and
directional link blocks (so symmetric and asymmetric partitions). Time is in sim units."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from shoal.raft import Message

__all__ = ["NetProfile", "SimNetwork"]


@dataclass(frozen=True)
class NetProfile:
    drop: float = 0.0
    duplicate: float = 0.0
    min_delay: int = 1
    max_delay: int = 5
    long_delay: float = 0.0  # chance of a delay of up to `long_max` units (reordering)
    long_max: int = 40


class SimNetwork:
    def __init__(self, rng: random.Random, profile: NetProfile) -> None:
        self.rng = rng
        self.profile = profile
        self.blocked: set[tuple[int, int]] = set()
        self._heap: list[tuple[int, int, Message]] = []
        self._seq = 0
        self.sent = self.delivered = self.dropped = 0

    def _delay(self) -> int:
        p = self.profile
        if p.long_delay and self.rng.random() < p.long_delay:
            return self.rng.randint(p.min_delay, p.long_max)
        return self.rng.randint(p.min_delay, p.max_delay)

    def send(self, m: Message, now: int) -> None:
        self.sent += 1
        p = self.profile
        if p.drop and self.rng.random() < p.drop:
            self.dropped += 1
            return
        copies = 2 if p.duplicate and self.rng.random() < p.duplicate else 1
        for _ in range(copies):
            self._seq += 1
            heapq.heappush(self._heap, (now + self._delay(), self._seq, m))

    def next_due(self, until: int) -> tuple[int, Message] | None:
        """Pop the next message due before `until` that its link lets through."""
        while self._heap and self._heap[0][0] < until:
            t, _, m = heapq.heappop(self._heap)
            if (m.from_, m.to) in self.blocked:
                self.dropped += 1
                continue
            self.delivered += 1
            return t, m
        return None

    def heal(self) -> None:
        self.blocked.clear()

    def partition(self, groups: list[set[int]]) -> None:
        """Symmetric: no traffic between different groups."""
        for a_group in groups:
            for b_group in groups:
                if a_group is not b_group:
                    self.blocked |= {(a, b) for a in a_group for b in b_group}

    def block(self, a: int, b: int) -> None:
        """Asymmetric: a's messages no longer reach b (b's still reach a)."""
        self.blocked.add((a, b))
