"""Leader-only work, started and stopped in one place: `LeaderDuties`.

`LeaderDuties` is the Raft driver's leadership callback (swarmkit's `becomeLeader` /
`becomeFollower` in manager/manager.go): on `True` it records this manager as the leader,
starts the reconcilers (`Reconcilers`: orchestrator, scheduler, task reaper, key manager),
Raft membership (`RaftMembers`) and the dispatcher's liveness tracking (`_Leads`, the
2377 services once they listen); on `False` it stops all of them. Nothing else in the
manager starts or stops leader-only work.

`RaftMembers` (swarmkit's role manager, for Raft): a manager node whose Raft member is a
learner is promoted to voter once caught up; a Raft member whose node is no longer a
manager in the store (demoted, removed, left) is removed from Raft. When that member is
this leader, the driver first hands leadership to the most up-to-date voter, and the new
leader finishes the removal. Level-triggered (a pass every `interval` while something is
left to do; once settled, the next pass after the driver applied something (an entry, a
conf change), at least every 30 s), so a change that a crash interrupted is
completed by whichever manager leads next.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from shoal.api.types import Node
from shoal.errors import ShoalError
from shoal.manager.netview.keys import KeyManager
from shoal.manager.orchestrator.reaper import TaskReaper
from shoal.manager.orchestrator.replicated import Orchestrator
from shoal.manager.raft.ids import raft_id
from shoal.manager.raft_role import RaftRole
from shoal.manager.reconciler import Reconciler
from shoal.manager.scheduler.scheduler import Scheduler
from shoal.manager.state.store import Store, Tx
from shoal.wakeups import sleep_on_grid

__all__ = ["LeaderDuties", "RaftMembers", "Reconcilers"]

log = logging.getLogger(__name__)

_SETTLED_RECHECK = 30.0  # seconds: a settled membership is looked at again at least this often


class Reconcilers:
    """The leader's reconcilers, each a task of its own while this manager leads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tasks: list[asyncio.Task[None]] = []
        self.reconcilers: list[Reconciler] = []

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def become_leader(self) -> None:
        if self._tasks:
            return
        log.info("manager: became leader, starting orchestrator, scheduler, reaper, keymanager")
        self.reconcilers = [
            Orchestrator(self.store),
            Scheduler(self.store),
            TaskReaper(self.store),
            KeyManager(self.store),
        ]
        self._tasks = [asyncio.create_task(r.run(), name=r.name) for r in self.reconcilers]

    async def become_follower(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Leads(Protocol):
    def lead(self, leading: bool) -> None: ...


class RaftMembers:
    def __init__(self, role: RaftRole, interval: float = 0.5) -> None:
        self.role = role
        self.interval = interval
        # (store index, term, voters, learners) of the last pass that had nothing left to
        # do: a pass over the same state would find nothing either (an idle leader made
        # one every 0.5 s, the node list and a hash per manager each time)
        self._settled: tuple[object, ...] | None = None

    def wanted(self) -> set[int]:
        """Raft IDs of the manager nodes that have said hello (have a 2377 address)."""
        return {
            raft_id(n.id)
            for n in self.role.store.view().nodes.list()
            if n.spec.role == "manager" and n.manager_status is not None and n.manager_status.addr
        }

    def _state(self) -> tuple[object, ...]:
        node = self.role.node
        cs = node.conf_state
        return (self.role.store.index, node.term, cs.voters, cs.learners)

    async def reconcile_once(self) -> None:
        node = self.role.node
        if not node.leader_ready:
            return
        cs = node.conf_state
        state = self._state()
        if state == self._settled:
            return
        wanted = self.wanted()
        for rid in cs.learners:
            if rid in wanted:
                log.info("raft: promoting learner %x to voter once it has caught up", rid)
                await node.promote(rid, timeout=30.0)
        others = [m for m in (*cs.voters, *cs.learners) if m != self.role.id]
        for rid in others:
            if rid not in wanted:
                log.info("raft: removing member %x: its node is no longer a manager", rid)
                await node.remove(rid)
        if self.role.id not in wanted and self.role.id in cs.voters and len(cs.voters) > 1:
            log.info("raft: this manager was demoted: handing leadership over to leave")
            await node.remove(self.role.id)  # transfers leadership, then NotLeader
        await self._forget_left_managers()
        self._settled = state  # reached only when every change asked for went through

    async def _forget_left_managers(self) -> None:
        """A demoted node out of Raft keeps no ManagerStatus (swarmkit clears it), so the
        managers' list handed to workers and joining nodes no longer names its 2377."""
        cs = self.role.node.conf_state
        members = {*cs.voters, *cs.learners}

        def left(n: Node) -> bool:
            return (
                n.spec.role == "worker"
                and n.manager_status is not None
                and raft_id(n.id) not in members
            )

        if not any(left(n) for n in self.role.store.view().nodes.list()):
            return

        def fn(tx: Tx) -> None:
            for n in tx.nodes.list():
                if left(n):
                    log.info("raft: node %s left Raft: forgetting its manager status", n.id)
                    n.manager_status = None
                    tx.nodes.update(n)

        await self.role.store.update(fn)

    async def run(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except ShoalError as exc:
                log.info("raft: membership change deferred: %s", exc.message)
            except Exception:  # never die silently: the next pass retries
                log.exception("raft: membership pass failed")
            # nothing left to do: the next pass once something is applied (a commit, a
            # conf change; a new term starts new duties) instead of every interval
            node = self.role.node
            settled = self._settled is not None and self._settled == self._state()
            if settled and await node.wait_applied(node.applied, _SETTLED_RECHECK):
                continue
            await sleep_on_grid(self.interval)  # with the tickers' wake-up


class LeaderDuties:
    """The leadership callback: `True` starts leader-only work, `False` stops it."""

    def __init__(self, reconcilers: Reconcilers, members: RaftMembers) -> None:
        self.reconcilers = reconcilers
        self.members = members
        self.leading = False
        self._cluster: _Leads | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, cluster: _Leads) -> None:
        self._cluster = cluster
        cluster.lead(self.leading)

    async def __call__(self, leading: bool) -> None:
        self.leading = leading
        if leading:
            log.info("raft: this manager leads: starting leader-only work")
            await self._record_leader()
            self.reconcilers.become_leader()
            if self._task is None:
                self._task = asyncio.create_task(self.members.run(), name="raft-members")
        else:
            log.info("raft: this manager no longer leads: stopping leader-only work")
            await self._stop_members()
            await self.reconcilers.become_follower()
        if self._cluster is not None:
            self._cluster.lead(leading)

    async def _record_leader(self) -> None:
        """Keep the stored ManagerStatus.Leader flags true to Raft, so the managers' list
        handed to workers and joining nodes (leader first) starts with the leader."""
        me = self.members.role.node_id

        def fn(tx: Tx) -> None:
            for node in tx.nodes.list():
                status = node.manager_status
                if status is not None and status.leader != (node.id == me):
                    status.leader = node.id == me
                    tx.nodes.update(node)

        try:
            await self.members.role.store.update(fn)
        except ShoalError as exc:
            log.info("raft: leader flag not recorded: %s", exc.message)

    async def _stop_members(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # gather, not suppress(CancelledError): a cancellation of *this* task (the
            # driver stopping) must go through, not be swallowed with the child's
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        self.leading = False
        await self._stop_members()
        await self.reconcilers.become_follower()
