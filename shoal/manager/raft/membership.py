"""Membership helpers of the driver, one server at a time (see docs/design/raft.md).

A manager joins as a **learner** (it receives the log, never votes or counts towards a
quorum), is **promoted** to voter once it has caught up, and is **removed** when it is
demoted or leaves. A leader that is asked to remove itself first hands leadership to the
most up-to-date voter (the cluster keeps a leader throughout) and answers `NotLeader`
naming it: the removal is then proposed by the new leader (the caller retries there, as
it does with any write that reaches a non-leader).

Each helper runs on the leader, waits until the leader has applied the first entry of
its term (the core refuses changes before that), and returns the index at which the
change was applied here.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from shoal.errors import Unavailable
from shoal.manager.raft.config import RaftNodeConfig
from shoal.manager.raft.errors import NotLeader
from shoal.raft import ConfChange, ConfChangeType, ConfState, Status

__all__ = ["Membership"]


class Membership(abc.ABC):
    id: int
    config: RaftNodeConfig

    # --- provided by RaftNode ------------------------------------------------------------

    @property
    @abc.abstractmethod
    def is_leader(self) -> bool: ...

    @property
    @abc.abstractmethod
    def leader_ready(self) -> bool: ...

    @property
    @abc.abstractmethod
    def leader_id(self) -> int: ...

    @property
    @abc.abstractmethod
    def committed(self) -> int: ...

    @property
    @abc.abstractmethod
    def conf_state(self) -> ConfState: ...

    @abc.abstractmethod
    def status(self) -> Status: ...

    @abc.abstractmethod
    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None: ...

    @abc.abstractmethod
    async def _propose_conf_change(self, cc: ConfChange) -> int: ...

    @abc.abstractmethod
    def _submit_transfer(self, to: int) -> None: ...

    # --- the helpers -----------------------------------------------------------------------

    async def add_learner(self, node_id: int, context: bytes = b"") -> int:
        """Add `node_id` as a learner; `context` is opaque to Raft (e.g. its address)."""
        await self._wait_leader_ready()
        cc = ConfChange(ConfChangeType.ADD_LEARNER, node_id, context)
        return await self._propose_conf_change(cc)

    async def promote(self, node_id: int, *, timeout: float | None = None) -> int:
        """Make learner `node_id` a voter once it holds everything committed when called."""
        await self._wait_leader_ready()
        target = self.committed
        await self.wait_until(
            lambda: not self.is_leader or self._match(node_id) >= target,
            timeout or self.config.timeout,
        )
        self._check_leader()
        return await self._propose_conf_change(ConfChange(ConfChangeType.ADD_NODE, node_id))

    async def remove(self, node_id: int) -> int:
        """Remove a voter or learner. On the leader removing itself: transfer leadership
        first, then raise `NotLeader` naming the new leader, which must do the removal."""
        await self._wait_leader_ready()
        if node_id == self.id and any(v != self.id for v in self.conf_state.voters):
            new = await self.transfer_leadership()
            raise NotLeader(
                f"raft {self.id:x}: leadership handed to {new:x}; ask it to remove {node_id:x}",
                new,
            )
        return await self._propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, node_id))

    async def transfer_leadership(
        self, to: int | None = None, *, timeout: float | None = None
    ) -> int:
        """Hand leadership to `to` (default: the most up-to-date other voter); returns the
        new leader once this node has heard from it."""
        self._check_leader()
        if to is None:
            to = self._best_transferee()
        self._submit_transfer(to)
        try:
            await self.wait_until(
                lambda: not self.is_leader and self.leader_id != 0,
                timeout or 2 * self.config.election_timeout,
            )
        except Unavailable:
            raise Unavailable(f"raft {self.id:x}: leadership transfer to {to:x} failed") from None
        return self.leader_id

    # --- internals -------------------------------------------------------------------------

    def _check_leader(self) -> None:
        if not self.is_leader:
            raise NotLeader(f"raft {self.id:x}: not the leader", self.leader_id)

    async def _wait_leader_ready(self) -> None:
        self._check_leader()
        await self.wait_until(lambda: self.leader_ready or not self.is_leader, self.config.timeout)
        self._check_leader()

    def _match(self, node_id: int) -> int:
        pr = self.status().progress.get(node_id)
        return pr.match if pr is not None else -1

    def _best_transferee(self) -> int:
        progress = self.status().progress
        voters = [v for v in self.conf_state.voters if v != self.id and v in progress]
        if not voters:
            raise Unavailable(f"raft {self.id:x}: no other voter to hand leadership to")
        return max(voters, key=lambda v: (progress[v].recent_active, progress[v].match))
