"""The member list as one node sees it, and the order in which it probes them.

Pure: randomness comes from the `RandomSource` (a seeded `random.Random`) the caller
passes. Probing walks a shuffled list round-robin (reshuffled at the end of each round,
new members inserted at a random place), so every live member is probed at least once
every two rounds: a crashed member meets its first prober within 2 (n - 1) probe periods,
whatever the dice say.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = ["Member", "MemberStatus", "Members", "RandomSource"]

T = TypeVar("T")


class RandomSource(Protocol):
    """What gossip needs of randomness (a seeded `random.Random` provides it)."""

    def random(self) -> float: ...

    def randint(self, a: int, b: int) -> int: ...

    def shuffle(self, x: list[Any]) -> None: ...

    def sample(self, population: Sequence[T], k: int) -> list[T]: ...

    def choice(self, seq: Sequence[T]) -> T: ...


class MemberStatus(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"

    @property
    def live(self) -> bool:
        return self in (MemberStatus.ALIVE, MemberStatus.SUSPECT)


@dataclass
class Member:
    node_id: str
    addr: str
    incarnation: int
    status: MemberStatus
    since: int  # tick of the last status change


class Members:
    """Every other member this node knows (never itself)."""

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}
        self._order: list[str] = []
        self._next = 0

    def __len__(self) -> int:
        return len(self._members)

    def get(self, node_id: str) -> Member | None:
        return self._members.get(node_id)

    def all(self) -> list[Member]:
        return [self._members[k] for k in sorted(self._members)]

    def live(self) -> list[Member]:
        return [m for m in self.all() if m.status.live]

    def add(self, member: Member, rng: RandomSource) -> None:
        self._members[member.node_id] = member
        self._order.insert(rng.randint(0, len(self._order)), member.node_id)

    def forget(self, node_id: str) -> None:
        self._members.pop(node_id, None)

    def next_probe(self, rng: RandomSource) -> Member | None:
        """The next live member to probe, or None if there is none."""
        for _ in range(2):
            while self._next < len(self._order):
                member = self._members.get(self._order[self._next])
                self._next += 1
                if member is not None and member.status.live:
                    return member
            self._order = [m.node_id for m in self.live()]
            rng.shuffle(self._order)
            self._next = 0
        return None

    def sample(
        self, rng: RandomSource, k: int, exclude: set[str], dead_since: int | None = None
    ) -> list[Member]:
        """Up to `k` random live members not in `exclude`; with `dead_since`, members that
        died at or after that tick are candidates too (they get gossip so they can refute)."""
        pool = [
            m
            for m in self.all()
            if m.node_id not in exclude
            and (
                m.status.live
                or (
                    dead_since is not None
                    and m.status is MemberStatus.DEAD
                    and m.since >= dead_since
                )
            )
        ]
        if len(pool) <= k:
            rng.shuffle(pool)
            return pool
        return rng.sample(pool, k)
