"""`RemoteSession`: the AgentSession contract served by a manager's dispatcher over 2377.

One connection at a time to one manager from the list; when it fails (stream broken,
heartbeat unanswered, manager gone) the next manager of the list is tried, after a short
growing pause. The list is refreshed from every session message and handed to
`on_managers` (the daemon persists it), so a node that restarts knows every manager.

Heartbeats are sent here, at the period the dispatcher asks for; the agent's own
`heartbeat()` calls are no-ops. Status reports made while no manager is reachable are kept
(latest per task) and sent after the reconnect, so a state change is never lost; a report
the dispatcher refuses (a backwards transition) raises, as the contract says. A report the
connected manager could not take yet (Unavailable: a leader just elected that cannot
commit yet) is kept and retried on the same session after a short growing pause, not only
when the next report or session comes (a node whose last task just started has none).

On every new session the last state of every task this node holds is sent again (swarmkit's
agent does the same): a report that was in flight when a session broke, or that reached a
manager that lost it (a follower, a deposed leader), reaches the store from the next one.
A task leaves that record once the dispatcher stops assigning it to this node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from shoal import timeouts
from shoal.agent.log_publisher import LogPublisher
from shoal.agent.resources import host_resources
from shoal.agent.secrets import AssignedSecrets
from shoal.api.latency import LatencyRecord
from shoal.api.netview import NetPeer, NetService, NetView
from shoal.api.session import LEADER_AT, StatusUpdate
from shoal.api.types import Task
from shoal.ca.files import NodeTLS
from shoal.cluster.client import ClusterClient
from shoal.cluster.wire import (
    Empty,
    HeartbeatResponse,
    PublishedPort,
    RenewRequest,
    RenewResponse,
    SessionMessage,
    SessionRequest,
    StatusRequest,
)
from shoal.errors import InvalidArgument, NotFound, ShoalError, Unavailable

__all__ = ["RemoteSession", "network_of"]

log = logging.getLogger(__name__)

Ports = list[PublishedPort]
_CONNECT_TIMEOUT = 10.0


class RemoteSession:
    def __init__(
        self,
        managers: list[str],
        tls: Callable[[], NodeTLS],
        hostname: str,
        addr: str,
        on_managers: Callable[[list[str]], None] = lambda m: None,
        on_ports: Callable[[Ports], None] = lambda p: None,
        on_network: Callable[[NetView], None] = lambda v: None,
        gossip_addr: str = "",
        logs: LogPublisher | None = None,
    ) -> None:
        if not managers:
            raise InvalidArgument("no manager address to connect to")
        self.managers = list(managers)
        self._tls = tls
        self._request = SessionRequest(
            hostname=hostname, addr=addr, gossip_addr=gossip_addr, resources=host_resources()
        )
        self._on_managers = on_managers
        self._on_ports = on_ports
        self._on_network = on_network
        self._index = 0
        self.logs = logs  # serves the leader's log subscriptions on the session's connection
        self._client: ClusterClient | None = None
        self.connected = asyncio.Event()
        self._latest: list[Task] | None = None
        self._new_tasks = asyncio.Event()
        self._pending: dict[str, StatusUpdate] = {}
        self._kept = asyncio.Event()  # set when a flush kept reports for a retry
        self._held: dict[str, StatusUpdate] = {}  # last state reported, per task held
        self.period = 5.0
        self.connected_to = ""
        self.secrets = AssignedSecrets()  # this node's secrets/configs, in memory only
        self.heartbeat_latency = LatencyRecord()  # answered heartbeats' round trips (metrics)

    # -- the AgentSession contract -----------------------------------------------------
    async def assignments(self) -> AsyncIterator[list[Task]]:
        while True:
            await self._new_tasks.wait()
            self._new_tasks.clear()
            if self._latest is not None:
                yield self._latest

    async def report(self, updates: list[StatusUpdate]) -> None:
        for update in updates:
            self._pending[update.task_id] = update
            self._held[update.task_id] = update
        await self._flush()

    async def heartbeat(self) -> None:
        """Heartbeats are this session's own business (at the dispatcher's period)."""

    async def renew(self, csr: bytes) -> bytes:
        """A new certificate for this node from a manager (for CertRenewer)."""
        client = self._client
        if client is None:
            raise Unavailable("no manager connected")
        response = await client.call("CA/Renew", RenewRequest(csr), RenewResponse)
        return response.cert

    # -- the connection ----------------------------------------------------------------
    async def run(self) -> None:
        pause = 0.2
        while True:
            addr = self.managers[self._index % len(self.managers)]
            client = ClusterClient(addr, self._tls().ca_pem, self._tls())
            try:
                await self._session(client)
            except ShoalError as exc:
                log.warning("session with manager %s ended: %s", addr, exc)
                self._follow_leader(exc.message)
            except Exception:
                log.exception("session with manager %s failed", addr)
            finally:
                self._client = None
                self.connected.clear()
                self.connected_to = ""
                with contextlib.suppress(Exception):
                    await client.close()
            self._index += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0) if self._index % len(self.managers) == 0 else pause

    def _follow_leader(self, message: str) -> bool:
        """A follower named the leader: try it next (leader first in the list)."""
        if LEADER_AT not in message:
            return False
        leader = message.split(LEADER_AT, 1)[1].strip()
        if not leader:
            return False
        self.managers = [leader] + [m for m in self.managers if m != leader]
        self._index = -1  # incremented before the next attempt
        return True

    async def _session(self, client: ClusterClient) -> None:
        stream = client.stream("Dispatcher/Session", self._request, SessionMessage)
        try:  # raises if the manager refuses or is unreachable
            first = await timeouts.wait_for(anext(stream), _CONNECT_TIMEOUT)
        except TimeoutError:
            raise Unavailable(f"manager {client.addr} did not open a session") from None
        self._client = client
        self.connected_to = client.addr
        self.connected.set()
        log.info("session: connected to manager %s", client.addr)
        self._take(first)
        self._report_held()
        await self._flush_each()
        reader = asyncio.create_task(self._read(stream))
        beats = asyncio.create_task(self._heartbeats(client))
        retries = asyncio.create_task(self._retry_kept())
        # service logs (logbroker): its end (an older manager) does not end the session
        logs = asyncio.create_task(self.logs.serve(client) if self.logs is not None
                                   else asyncio.sleep(0))
        try:
            done, _ = await asyncio.wait({reader, beats}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, beats, retries, logs):
                task.cancel()
            await asyncio.gather(reader, beats, retries, logs, return_exceptions=True)
        for task in done:
            task.result()  # the ShoalError that ended the session, if any
        raise Unavailable("the manager closed the session")

    async def _read(self, stream: AsyncIterator[SessionMessage]) -> None:
        async for message in stream:
            self._take(message)

    def _take(self, message: SessionMessage) -> None:
        self.period = message.heartbeat_period
        if message.managers and message.managers != self.managers:
            self.managers = list(message.managers)
            self._on_managers(self.managers)
        self._on_ports(list(message.ports))
        self._on_network(network_of(message))
        self.secrets.take(message)
        self._latest = message.tasks
        assigned = {t.id for t in message.tasks}
        for task_id in [t for t in self._held if t not in assigned]:
            del self._held[task_id]
        self._new_tasks.set()

    def _report_held(self) -> None:
        """Queue the last state of every task held, for the session just opened."""
        for task_id, update in self._held.items():
            self._pending.setdefault(task_id, update)

    async def _heartbeats(self, client: ClusterClient) -> None:
        while True:
            await asyncio.sleep(self.period)
            start = asyncio.get_running_loop().time()
            try:
                response = await client.call(
                    "Dispatcher/Heartbeat", Empty(), HeartbeatResponse, timeout=self.period
                )
            except NotFound:
                raise
            except Unavailable as exc:
                # the stream may hang on a dead manager: end the session, try the next one
                raise Unavailable(f"heartbeat unanswered: {exc.message}") from None
            self.heartbeat_latency.observe(asyncio.get_running_loop().time() - start)
            self.period = response.period

    async def _retry_kept(self) -> None:
        """Send kept reports again while this session lasts (0.1 s pause, doubling to 1 s)."""
        pause = 0.1
        while True:
            await self._kept.wait()
            self._kept.clear()
            await asyncio.sleep(pause)
            await self._flush_each()
            pause = min(pause * 2, 1.0) if self._kept.is_set() else 0.1

    async def _flush(self) -> None:
        client = self._client
        if client is None or not self._pending:
            return
        batch = list(self._pending.values())
        try:
            await _status_call(client, StatusRequest(batch))
        except Unavailable as exc:
            log.info("session: %d status report(s) kept: %s", len(batch), exc.message)
            self._kept.set()  # kept: retried on this session, else sent after the reconnect
            return
        except ShoalError:
            self._drop(batch)
            raise  # refused: the agent retries one by one and logs the culprit
        self._drop(batch)

    async def _flush_each(self) -> None:
        """Flush; if the batch is refused, send one by one and drop (and log) the refused."""
        try:
            await self._flush()
        except ShoalError:
            pass
        else:
            return
        for update in list(self._held.values()):
            self._pending.setdefault(update.task_id, update)
        for update in list(self._pending.values()):
            client = self._client
            if client is None:
                return
            try:
                await _status_call(client, StatusRequest([update]))
            except Unavailable:
                self._kept.set()
                return
            except ShoalError as exc:
                log.warning(
                    "task %s: status %s refused: %s", update.task_id, update.status.state, exc
                )
            self._drop([update])

    def _drop(self, batch: list[StatusUpdate]) -> None:
        for update in batch:
            if self._pending.get(update.task_id) is update:
                del self._pending[update.task_id]


async def _status_call(client: ClusterClient, request: StatusRequest) -> None:
    """UpdateTaskStatus; a call cancelled under us (grpc.aio raised CancelledError when the
    session's channel was closed mid-call) is Unavailable: the reports stay kept. Before, the
    CancelledError ended the agent's reporter task, and the node never reported again."""
    try:
        await client.call("Dispatcher/UpdateTaskStatus", request, Empty)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this task itself is being cancelled
        raise Unavailable(
            f"status report to {client.addr} cancelled: the session closed"
        ) from None


def network_of(message: SessionMessage) -> NetView:
    return NetView(
        peers=tuple(NetPeer(p.node_id, p.addr, p.subnet, p.gossip) for p in message.peers),
        data_path_port=message.data_path_port,
        keys=tuple(message.network_keys),
        live=frozenset((n, t) for n, t in message.live),
        services=tuple(NetService(r.service_id, r.name, r.network_id, r.vip, tuple(r.aliases))
                       for r in message.services),
    )
