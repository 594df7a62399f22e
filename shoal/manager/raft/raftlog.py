"""RaftLog: the store's `Log` replicated by Raft, a drop-in for `LocalLog`.

Writes: `Store.update` builds a batch against the local tables and calls `propose`, which
returns once the batch is committed by a quorum and applied here. Every replica applies
the committed batches with `Store.apply`, in log order, so every manager holds the same
objects with the same `Version.Index`.

Only a *ready* leader takes writes: one that has applied the first entry of its term,
hence everything committed before it. A transaction built on a lagging replica could
otherwise pass its optimistic version checks against stale objects and overwrite newer
ones. Anywhere else `propose` raises `NotLeader` (an `Unavailable`) carrying the
leader's Raft ID: **the hook for forwarding**. The follower's API layer catches it and
replays the whole request on the leader over 2377 (swarmkit's controlapi proxy does the
same), rather than shipping this batch, whose checks ran against the follower's view.

Reads that must be current (`service inspect` right after an update) call `barrier()`
first: a ReadIndex round, after which the local store is at least as recent as every
write acknowledged before the call. Other reads use the local copy.

Wiring (what the daemon will do instead of LocalLog)::

    store = Store()
    storage = SQLiteStorage.open(data_dir / "raft.db")
    if storage.is_empty and founding: storage.bootstrap((my_raft_id,))
    log = RaftLog.open(store, my_raft_id, storage, transport, config)
    store.attach(log)
    log.node.on_leadership(lambda lead: manager.become_leader() if lead
                           else manager.become_follower())
    tg.create_task(log.run())
"""

from __future__ import annotations

import random

from shoal.manager.raft.config import RaftNodeConfig
from shoal.manager.raft.errors import NotLeader
from shoal.manager.raft.node import RaftNode
from shoal.manager.raft.snapshot import encode_store, load_store
from shoal.manager.raft.storage import SQLiteStorage
from shoal.manager.raft.transport import Transport
from shoal.manager.state.store import Store

__all__ = ["RaftLog", "StoreStateMachine"]


class StoreStateMachine:
    """The store as Raft's state machine (apply / snapshot / restore)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def apply(self, index: int, data: bytes) -> None:
        self.store.apply(data)

    def snapshot(self) -> bytes:
        return encode_store(self.store)

    def restore(self, data: bytes) -> None:
        load_store(self.store, data)
        self.store.publish_reload()


class RaftLog:
    def __init__(self, node: RaftNode) -> None:
        self.node = node

    @classmethod
    def open(
        cls,
        store: Store,
        node_id: int,
        storage: SQLiteStorage,
        transport: Transport,
        config: RaftNodeConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> RaftLog:
        """A RaftNode replicating `store` (loaded at once from `storage`'s snapshot; the
        committed entries after it are re-applied when the node runs)."""
        sm = StoreStateMachine(store)
        return cls(RaftNode(node_id, storage, transport, sm, config, rng=rng))

    def check_writable(self) -> None:
        """`NotLeader` unless this node is a ready leader: `Store.update` asks before it
        runs a transaction, so a follower refuses (and its API forwards) at once instead
        of building a batch that `propose` would refuse."""
        node = self.node
        if not node.leader_ready:
            leader = node.leader_id if node.leader_id != node.id else 0
            raise NotLeader(f"raft {node.id:x}: not the leader (leader {leader:x})", leader)

    async def propose(self, batch: bytes) -> None:
        self.check_writable()
        await self.node.propose(batch)

    async def barrier(self, timeout: float | None = None) -> None:
        """Wait until the local store reflects every write acknowledged before the call."""
        await self.node.read_index(timeout)

    async def run(self) -> None:
        await self.node.run()

    async def stop(self) -> None:
        await self.node.stop()
