"""This manager's Raft member: storage, driver, 2377 transport, joins, forwarding.

Wiring (see docs/design/raft-driver.md): the store's `Log` is a `RaftLog` over
`swarm/raft.db` (opened by shoal.manager.raft_open); messages travel by `Raft/Send`
(shoal.manager.raft.tls_transport); a manager that joins or restarts says hello with
`Raft/Join` to the leader, which records its 2377 address in the node's ManagerStatus and
adds it as a learner (the leader's `RaftMembers` reconciler promotes it once caught up).
Raft IDs are derived from node IDs (shoal.manager.raft.ids).

Writes reaching this node when it is not the leader raise `NotLeader`; the API layer then
calls `forward`, which replays the request on the leader over `Control/Forward`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from shoal.api.types import ManagerStatus, Node
from shoal.ca.files import NodeTLS
from shoal.cluster.client import ClusterClient
from shoal.cluster.forward import NOT_LEADER_HEADER, ForwardRequest, ForwardResponse, forward
from shoal.cluster.raft import RaftEndpoint, RaftMember, join_raft
from shoal.errors import InvalidArgument, NotFound, ShoalError, Unavailable
from shoal.manager.raft import NotLeader, RaftLog, RaftNodeConfig
from shoal.manager.raft.ids import raft_id
from shoal.manager.raft.tls_transport import RaftReceiver, RaftTransport
from shoal.manager.raft_open import config_for, open_storage, replay
from shoal.manager.raft_timing import follow_raft_spec
from shoal.manager.state.store import Store, Tx

__all__ = ["NO_LEADER", "ElectedHere", "RaftRole", "tick_interval"]

log = logging.getLogger(__name__)
T = TypeVar("T")

NO_LEADER = (
    "rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that "
    "too few managers are online. Make sure more than half of the managers are online."
)


class ElectedHere(Unavailable):
    """A call meant for the leader found this node leading (and ready): do it here."""


def tick_interval() -> float:
    """Raft's default tick (seconds): SHOAL_RAFT_TICK_MS, else 100 ms (see raft-driver.md).
    A swarm's Spec.Raft.TickInterval overrides it; `swarm init` stores it there."""
    value = os.environ.get("SHOAL_RAFT_TICK_MS", "")
    try:
        return max(int(value), 1) / 1000 if value else 0.1
    except ValueError:
        raise InvalidArgument(f"SHOAL_RAFT_TICK_MS={value!r} is not a number") from None


class RaftRole:
    def __init__(self, swarm_dir: Path, store: Store, node_id: str, *, founding: bool) -> None:
        self.node_id = node_id
        self.id = raft_id(node_id)
        self.store = store
        self.storage = open_storage(swarm_dir, node_id, founding=founding)
        scratch = Store()
        replay(self.storage, scratch)
        self.default_tick = tick_interval()
        config = config_for(scratch, self.default_tick)
        self.addr = ""  # this manager's advertised 2377, once it listens
        self.gossip_addr = ""
        self._tls: Callable[[], NodeTLS] | None = None
        self.transport = RaftTransport(lambda: self.addr, self._current_tls, self._store_addr)
        self.log = RaftLog.open(store, self.id, self.storage, self.transport, config)
        self.node = self.log.node
        store.attach(self.log)
        self._task: asyncio.Task[None] | None = None
        self._hello: asyncio.Task[None] | None = None
        self._follow: asyncio.Task[None] | None = None
        self._clients: dict[str, tuple[bytes, ClusterClient]] = {}

    # -- life cycle ---------------------------------------------------------------------
    async def start(self, tls: Callable[[], NodeTLS]) -> None:
        """Run the member; once the committed log is re-applied (so the membership is
        known), a lone voter campaigns at once and waits to lead, so writes work as soon
        as this returns (swarm init, a single manager's restart)."""
        self._tls = tls
        commit = self.storage.hard_state.commit
        self._task = asyncio.create_task(self.log.run(), name="raft")
        await self.node.wait_until(lambda: self.node.applied >= commit, 30.0)
        self._follow = asyncio.create_task(
            follow_raft_spec(self.store, self.node, self.default_tick), name="raft-spec"
        )
        if self.node.conf_state.voters == (self.id,):
            self.node.campaign()
            await self.wait_leader(10.0)

    def serve(
        self,
        endpoint: RaftEndpoint,
        addr: str,
        managers: Callable[[], list[str]],
        gossip_addr: str = "",
    ) -> None:
        """Take Raft messages on 2377 (`addr` is ours) and say hello to the leader."""
        self.addr, self.gossip_addr = addr, gossip_addr
        receiver = RaftReceiver(
            self.node,
            self.transport,
            self.config.max_message_bytes,
            on_lost=self.node.report_stream_lost,
        )
        endpoint.set_handler(receiver, receiver.lost)
        endpoint.set_join_handler(self.admit)
        if self._hello is None:
            self._hello = asyncio.create_task(self.hello(managers), name="raft-hello")

    async def wait_leader(self, timeout: float) -> None:
        await self.node.wait_until(lambda: self.node.leader_ready, timeout)

    @property
    def config(self) -> RaftNodeConfig:
        """The driver's current settings (they follow SwarmSpec.Raft live)."""
        return self.node.config

    async def close(self) -> None:
        for task in (self._hello, self._follow):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._hello = self._follow = None
        await self.log.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.transport.close()
        for _, client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        self._clients.clear()
        await self.storage.aclose()

    # -- who leads ----------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self.node.leader_ready

    @property
    def leader_id(self) -> int:
        """The Raft ID of the leader this node knows of (0: none)."""
        return self.node.leader_id

    async def remove_member(self, rid: int) -> None:
        """Remove the Raft member `rid` (a conf change through the leader's log)."""
        await self.node.remove(rid)

    async def transfer_leadership(self) -> int:
        """Hand this leader's role to the most up-to-date other voter; its Raft ID."""
        return await self.node.transfer_leadership()

    @property
    def members(self) -> tuple[int, ...]:
        cs = self.node.conf_state
        return (*cs.voters, *cs.learners)

    def node_of(self, rid: int) -> Node | None:
        for node in self.store.view().nodes.list():
            if raft_id(node.id) == rid:
                return node
        return None

    def _store_addr(self, rid: int) -> str | None:
        node = self.node_of(rid)
        if node is None or node.manager_status is None:
            return None
        return node.manager_status.addr or None

    def _current_tls(self) -> NodeTLS:
        if self._tls is None:
            raise Unavailable("raft: this manager has no certificate yet")
        return self._tls()

    def manager_status(self, node: Node) -> ManagerStatus | None:
        """`node`'s ManagerStatus as Raft sees it from here (Leader, Reachability)."""
        if node.manager_status is None:
            return None
        rid = raft_id(node.id)
        if node.spec.role == "worker" and rid not in self.members:
            return None  # demoted and out of Raft: swarmkit shows no ManagerStatus
        if rid in self.node.conf_state.learners:
            reach = "unknown"  # joining: a learner until caught up, then a voter
        elif rid not in self.members:
            reach = "unreachable"
        elif rid == self.id:
            reach = "reachable" if self.node.running else "unreachable"
        elif self.node.is_leader:
            reach = "reachable" if self.node.reachability().get(rid) else "unreachable"
        else:
            heard = self.node.reachability().get(rid, False)
            reach = "reachable" if heard or rid == self.node.leader_id else "unknown"
        return ManagerStatus(
            leader=rid == self.node.leader_id and self.node.leader_id != 0,
            reachability=reach,  # type: ignore[arg-type]
            addr=node.manager_status.addr,
        )

    # -- reads and forwarded writes -------------------------------------------------------
    async def barrier(self) -> None:
        """Reads after this see every write acknowledged before it (ReadIndex)."""
        if self.members == (self.id,) and self.node.leader_ready:
            return
        try:
            await self.log.barrier()
        except Unavailable:
            raise Unavailable(NO_LEADER) from None

    async def await_own_leadership(self) -> bool:
        """True once this node, already elected, is a ready leader (it has applied its
        term's first entry); False at once when another node leads or none is known."""
        node = self.node
        if node.leader_id != self.id:
            return False
        with contextlib.suppress(Unavailable):
            await node.wait_until(
                lambda: node.leader_ready or node.leader_id != self.id, self.config.timeout
            )
        return node.leader_ready

    async def forward(self, req: ForwardRequest) -> ForwardResponse:
        """Replay an API request on the leader; retried while leadership moves."""

        async def call(client: ClusterClient) -> ForwardResponse | None:
            response = await forward(client, req)
            return None if _not_leader(response) else response

        return await self.on_leader(call, f"{req.method} {req.path}")

    async def call_leader(self, name: str, request: object, response: type[T]) -> T:
        """A 2377 call on the current leader (e.g. a dispatcher call of this node's agent)."""

        async def call(client: ClusterClient) -> T | None:
            return await client.call(name, request, response)

        return await self.on_leader(call, name)

    async def on_leader(self, fn: Callable[[ClusterClient], Awaitable[T | None]], what: str) -> T:
        """`fn(client of the leader)`, retried (a None answer or an unreachable leader)
        until a leader answers or several election timeouts pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(3 * self.config.election_timeout, 5.0)
        while True:
            lead = self.node.leader_id
            if lead == self.id and await self.await_own_leadership():
                raise ElectedHere("raft: this manager leads now")
            addr = self.transport.address(lead) if lead and lead != self.id else None
            if addr:
                try:
                    result = await fn(self._client(addr))
                except Unavailable as exc:
                    log.info("raft: %s on the leader (%s) failed: %s", what, addr, exc.message)
                    result = None
                if result is not None:
                    return result
            if loop.time() >= deadline:
                raise Unavailable(NO_LEADER)
            with contextlib.suppress(Unavailable):
                await self.node.wait_until(
                    lambda lead=lead: self.node.leader_id not in (0, lead, self.id),  # type: ignore[misc]
                    min(0.2, max(deadline - loop.time(), 0.01)),
                )

    def _client(self, addr: str) -> ClusterClient:
        tls = self._current_tls()
        known = self._clients.get(addr)
        if known is not None and known[0] == tls.cert_pem:
            return known[1]
        client = ClusterClient(addr, tls.ca_pem, tls)
        self._clients[addr] = (tls.cert_pem, client)
        return client

    # -- joining ------------------------------------------------------------------------
    async def admit(self, sender: str, addr: str, gossip_addr: str = "") -> list[RaftMember]:
        """`Raft/Join` on the leader: record `sender`'s addresses, add it as a learner."""
        if not self.node.leader_ready:
            raise NotLeader("raft: not the leader", self.node.leader_id)
        view = self.store.view().nodes.get(sender)
        if view is None:
            raise NotFound(f"node {sender} is not a member of this swarm")
        if view.spec.role != "manager":
            raise InvalidArgument(f"node {sender} is not a manager")
        rid = raft_id(sender)
        self.transport.learn(rid, addr)

        def fn(tx: Tx) -> None:
            node: Node | None = tx.nodes.get(sender)
            if node is None:
                return
            status = node.manager_status or ManagerStatus()
            gossip = gossip_addr or node.gossip_addr
            if node.manager_status is None or status.addr != addr or node.gossip_addr != gossip:
                status.addr = addr
                node.manager_status = status
                node.gossip_addr = gossip
                tx.nodes.update(node)

        await self.store.update(fn)
        if rid not in self.members:
            log.info("raft: adding manager %s (%x, %s) as a learner", sender, rid, addr)
            await self.node.add_learner(rid, addr.encode())
        return [
            RaftMember(m, n.id if (n := self.node_of(m)) else "", self.transport.address(m) or "")
            for m in self.members
        ]

    async def hello(self, managers: Callable[[], list[str]]) -> None:
        """Until the leader has this manager's address and membership: ask it (or, when
        this node leads, record it here)."""
        pause = 0.2
        while True:
            if self.node.leader_ready:
                with contextlib.suppress(ShoalError):
                    await self.admit(self.node_id, self.addr, self.gossip_addr)
                    return
            for addr in self._hello_targets(managers()):
                try:
                    members = await join_raft(self._client(addr), self.addr, self.gossip_addr)
                except ShoalError as exc:
                    log.debug("raft: hello to %s: %s", addr, exc)
                    continue
                for m in members:
                    self.transport.learn(m.raft_id, m.addr)
                log.info("raft: joined through %s (%d members)", addr, len(members))
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _hello_targets(self, managers: list[str]) -> list[str]:
        lead = self.node.leader_id
        first = self.transport.address(lead) if lead and lead != self.id else None
        out = [a for a in [first, *managers] if a and a != self.addr]
        return list(dict.fromkeys(out))

    # -- removal --------------------------------------------------------------------------
    def check_removal(self, node_id: str) -> None:
        """Refuse removing `node_id` from Raft if the rest would have no quorum (docker's
        "would lose quorum")."""
        rid = raft_id(node_id)
        voters = [v for v in self.node.conf_state.voters if v != rid]
        if rid not in self.node.conf_state.voters:
            return
        if not voters:
            raise InvalidArgument(
                "rpc error: code = FailedPrecondition desc = attempting to demote the last "
                "manager of the swarm"
            )
        reach = self.node.reachability() if self.node.is_leader else {}
        up = sum(1 for v in voters if v == self.id or reach.get(v))
        if up < len(voters) // 2 + 1:
            raise InvalidArgument(
                "rpc error: code = FailedPrecondition desc = can't remove member from the "
                "raft: this would result in a loss of quorum"
            )


def _not_leader(response: ForwardResponse) -> bool:
    return response.status == 503 and any(
        k.lower() == NOT_LEADER_HEADER.lower() for k, _ in response.headers
    )
