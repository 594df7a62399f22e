"""PURE memo of the kernel planner's per-service work, so that planning costs follow the
change, not the table (kube-proxy's nftables proxier rewrites only changed services' chains).

`plan(state, table, cache=PlanCache())` gives exactly what `plan(state, table)` gives (a
property test checks it against the plain planner over random sequences of states); the
cache only skips recomputing what an unchanged service already produced: its backends
(address validation and ordering, the costly part) and its DNAT chain text. No I/O, no
clock, no randomness; entries not used by the latest plan are dropped, so its size follows
the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shoal.mesh.model import Endpoint, PortSpec

if TYPE_CHECKING:
    from shoal.mesh.plan import Chain, PortPlan

__all__ = ["PlanCache"]

_BackendKey = tuple[str, str, str, tuple[Endpoint, ...]]


class PlanCache:
    def __init__(self) -> None:
        self._backends: dict[tuple[str, str, str], tuple[_BackendKey, tuple[str, ...],
                                                          tuple[str, ...]]] = {}
        self._next_backends: dict[tuple[str, str, str], tuple[_BackendKey, tuple[str, ...],
                                                               tuple[str, ...]]] = {}
        self._chains: dict[PortPlan, Chain] = {}
        self._next_chains: dict[PortPlan, Chain] = {}
        self.hits = 0
        self.misses = 0

    def begin(self) -> None:
        """A new plan starts: what it does not use is forgotten at `end`."""
        self._next_backends, self._next_chains = {}, {}

    def end(self) -> None:
        self._backends, self._next_backends = self._next_backends, {}
        self._chains, self._next_chains = self._next_chains, {}

    def backends(
        self,
        port: PortSpec,
        endpoints: Sequence[Endpoint],
        node_id: str,
        problems: list[str],
        compute: Callable[[PortSpec, Sequence[Endpoint], str, list[str]], tuple[str, ...]],
    ) -> tuple[str, ...]:
        slot = (port.service_id, port.protocol, str(port.published))
        key: _BackendKey = (port.mode, port.policy, node_id, tuple(endpoints))
        cached = self._backends.get(slot)
        if cached is not None and cached[0] == key:
            self.hits += 1
            _, found, found_problems = cached
        else:
            self.misses += 1
            mine: list[str] = []
            found = compute(port, endpoints, node_id, mine)
            found_problems = tuple(mine)
        problems.extend(found_problems)
        self._next_backends[slot] = (key, found, found_problems)
        return found

    def chain(self, port: PortPlan, build: Callable[[PortPlan], Chain]) -> Chain:
        """The chain of `port`: built once while the port's plan stays the same."""
        chain = self._chains.get(port)
        if chain is None:
            chain = build(port)
        self._next_chains[port] = chain
        return chain
