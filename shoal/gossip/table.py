"""The endpoint table: which task of which service runs where, at which address, ready or
not, with the service's published ports.

Each node owns the entries of its local tasks: the agent calls `set()`/`remove()` for them.
Without gossip the table holds only those. With a `GossipNode` attached, the same table is
the node's replica of the cluster-wide table (`EndpointState`): every node's entries,
merged by per-owner versions, a dead node's entries removed at once, and `reconcile()`
dropping what the managers do not know. Readers (the mesh) wait on `wait_change()` and read
`entries()`; `ports()` gives the published ports the entries carry, for a node without the
store.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable

from shoal.gossip.endpoints import EndpointEntry, EndpointState, PublishedPort

__all__ = ["EndpointEntry", "EndpointTable", "PublishedPort"]


class EndpointTable:
    def __init__(self, state: EndpointState | None = None, reconcile_grace: int = 50) -> None:
        self.state = state if state is not None else EndpointState()
        self.reconcile_grace = reconcile_grace
        self._event = asyncio.Event()
        self.state.listeners.append(self._wake)
        # called before a change: a GossipNode brings its core's clock up to date, so a
        # change is stamped with the current tick (the core may sleep between due ticks)
        self.before_change: Callable[[], object] | None = None

    @property
    def version(self) -> int:
        """Bumped on every visible change (not a gossip version)."""
        return self.state.generation

    def entries(self) -> list[EndpointEntry]:
        return self.state.entries()

    def set(self, entry: EndpointEntry) -> None:
        """Publish (or update) a task of this node."""
        self._before_change()
        self.state.set_local(entry)

    def remove(self, task_id: str) -> None:
        """Withdraw a task of this node (a tombstone once gossip replicates the table)."""
        self._before_change()
        self.state.remove_local(task_id)

    def reconcile(self, authoritative: Iterable[tuple[str, str]]) -> int:
        """Remove every entry whose (node_id, task_id) the managers do not know.

        With gossip attached, entries younger than `reconcile_grace` ticks are spared (they
        may have raced the managers' snapshot); this node's own removals are gossiped.
        """
        grace = self.reconcile_grace if self.state.replicated else 0
        self._before_change()
        return self.state.reconcile(authoritative, grace)

    def ports(self) -> list[tuple[str, str, int, int, str]]:
        """(service_id, protocol, published, target, mode) of every service with entries.

        Entries of one service may disagree while its ports are being updated; for each
        published port the target most entries carry wins (ready entries count first).
        """
        votes: Counter[tuple[str, str, int, int, str]] = Counter()
        for e in self.entries():
            for p in e.ports:
                votes[(e.service_id, p.protocol, p.published, p.target, p.mode)] += (
                    1000 if e.ready else 1
                )
        best: dict[tuple[str, str, int], tuple[int, tuple[str, str, int, int, str]]] = {}
        for key, count in sorted(votes.items()):
            slot = (key[0], key[1], key[2])
            if slot not in best or count > best[slot][0]:
                best[slot] = (count, key)
        return sorted(v for _, v in best.values())

    def _before_change(self) -> None:
        if self.before_change is not None:
            self.before_change()

    def _wake(self) -> None:
        # wake every waiter of the current generation, start a new one
        self._event.set()
        self._event = asyncio.Event()

    async def wait_change(self, seen: int) -> int:
        while self.version == seen:
            await self._event.wait()
        return self.version
