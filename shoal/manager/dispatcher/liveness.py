"""Which nodes are alive: heartbeat deadlines. Pure (time is passed in).

A node is expected to heartbeat every `period`; it is declared down once `GRACE_PERIODS`
periods pass without one (swarmkit's grace multiplier is 3 as well). When this manager
starts leading it knows nothing of the nodes' last heartbeats, so every node gets a full
grace from that moment (`track`) instead of being declared down at once.
"""

from __future__ import annotations

__all__ = ["GRACE_PERIODS", "Liveness"]

GRACE_PERIODS = 3


class Liveness:
    def __init__(self, period: float) -> None:
        self.period = period
        self._deadline: dict[str, float] = {}

    @property
    def grace(self) -> float:
        return self.period * GRACE_PERIODS

    def track(self, node_id: str, now: float) -> None:
        """Expect heartbeats from `node_id`, the first one within a grace from `now`."""
        self._deadline.setdefault(node_id, now + self.grace)

    def beat(self, node_id: str, now: float) -> None:
        self._deadline[node_id] = now + self.grace

    def tracked(self) -> list[str]:
        return list(self._deadline)

    def forget(self, node_id: str) -> None:
        self._deadline.pop(node_id, None)

    def expired(self, now: float) -> list[str]:
        """Nodes past their deadline; they are forgotten until they heartbeat again."""
        gone = sorted(n for n, d in self._deadline.items() if d <= now)
        for node_id in gone:
            del self._deadline[node_id]
        return gone

    def next_deadline(self) -> float | None:
        return min(self._deadline.values(), default=None)

    def set_period(self, period: float, now: float) -> None:
        """A new period: deadlines further than a new grace away are pulled in."""
        self.period = period
        for node_id, deadline in self._deadline.items():
            self._deadline[node_id] = min(deadline, now + self.grace)
