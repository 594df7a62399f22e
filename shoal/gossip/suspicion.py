"""Lifeguard's suspicion timer, in ticks: the more members independently suspect a node,
the sooner it is declared dead.

A suspicion starts at `max` ticks and moves towards `min` as confirmations (suspect
messages from *other* origins) arrive: after c of the k wanted confirmations the timeout
is `max - (max - min) * log(c + 1) / log(k + 1)`, never below `min`, counted from the
start. With k = 0 (too few members to confirm) the timeout is `min`.
"""

from __future__ import annotations

import math

__all__ = ["Suspicion"]


class Suspicion:
    def __init__(self, origin: str, k: int, low: int, high: int, start: int) -> None:
        self.k = max(0, k)
        self.low = low
        self.high = high
        self.start = start
        self._confirmed: set[str] = {origin}
        self.confirmations = 0
        self.deadline = start + (low if self.k == 0 else high)

    def confirm(self, origin: str) -> bool:
        """Count `origin`'s suspicion; True if it was new (then pass the message on)."""
        if self.confirmations >= self.k or origin in self._confirmed:
            return False
        self._confirmed.add(origin)
        self.confirmations += 1
        frac = math.log(self.confirmations + 1) / math.log(self.k + 1)
        timeout = max(self.low, math.floor(self.high - frac * (self.high - self.low)))
        self.deadline = self.start + timeout
        return True
