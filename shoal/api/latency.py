"""`LatencyRecord`: a histogram of durations kept by the component that measures them.

The Raft driver (propose -> applied) and the agent sessions (heartbeat round trips) record
into one of these; `shoal.observe.metrics` exports it at scrape time as a Prometheus
histogram. It lives below both planes so that neither imports the other, and it reads no
clock: the caller passes the duration it measured. Buckets are Prometheus' defaults.
"""

from __future__ import annotations

import bisect

__all__ = ["DEFAULT_BUCKETS", "LatencyRecord"]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                   10.0)


class LatencyRecord:
    """Counts per bucket (upper bound inclusive, as Prometheus' `le`), their sum and count."""

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.bounds = tuple(sorted(buckets))
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, observations at or below it) for every bound, then ("+Inf", count)."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self._counts, strict=False):
            running += n
            out.append((repr(float(bound)), running))
        out.append(("+Inf", self.count))
        return out
