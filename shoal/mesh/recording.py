"""A data plane that only records what it was asked to do (for tests of the node and agent)."""

from __future__ import annotations

from shoal.mesh.errors import MeshError
from shoal.mesh.model import MeshState
from shoal.mesh.traffic import PortTraffic

__all__ = ["RecordingDataPlane"]


class RecordingDataPlane:
    """Records every applied state. `fail_next(msg)` makes the next `apply` raise `MeshError`
    without recording, the way a failed nft transaction leaves the old rules in place.
    `counters` is what `traffic()` answers (set by the test); `traffic_reads` counts calls."""

    def __init__(self) -> None:
        self.states: list[MeshState] = []
        self.closed = False
        self._fail: str | None = None
        self.counters: dict[tuple[str, int], PortTraffic] = {}
        self.traffic_reads = 0

    async def traffic(self) -> dict[tuple[str, int], PortTraffic]:
        self.traffic_reads += 1
        return dict(self.counters)

    def fail_next(self, message: str = "nft: simulated failure") -> None:
        self._fail = message

    async def apply(self, state: MeshState) -> None:
        if self._fail is not None:
            message, self._fail = self._fail, None
            raise MeshError(message)
        self.closed = False
        self.states.append(state)

    async def close(self) -> None:
        self.closed = True

    @property
    def last(self) -> MeshState | None:
        return self.states[-1] if self.states else None

    def published(self) -> set[tuple[str, int, int]]:
        """(protocol, published, target) of every port in the last applied state."""
        last = self.last
        if last is None or self.closed:
            return set()
        return {(p.protocol, p.published, p.target) for p in last.ports}
