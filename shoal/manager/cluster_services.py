"""What a manager serves on 2377: joins and renewals, the dispatcher, Raft, forwarding,
the log broker.

Started once the store is open and this node has its certificate; `addr` is what it
advertises to other nodes (the advertise address with the port actually listened on, so a
listener on port 0 in tests advertises the port it got). The dispatcher's liveness
tracking is leader-only: `lead(True/False)` starts and stops it (a follower's dispatcher
calls fail with NotLeader, so workers' sessions move on to the leader).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from shoal.ca.files import NodeTLS
from shoal.ca.root import RootCA
from shoal.cluster.forward import ForwardEndpoint, Forwarder
from shoal.cluster.raft import RaftEndpoint
from shoal.cluster.server import ClusterServer
from shoal.cluster.wire import JoinRequest, JoinResponse
from shoal.errors import InvalidArgument, Unavailable
from shoal.manager.dispatcher.dispatcher import Dispatcher
from shoal.manager.dispatcher.liveness import Liveness
from shoal.manager.issuer import CertIssuer
from shoal.manager.logbroker import LogBroker
from shoal.manager.state.store import Store, Tx

__all__ = ["ClusterServices", "split_listen_addr"]

log = logging.getLogger(__name__)


def split_listen_addr(value: str) -> tuple[str, int]:
    host, sep, port = (value or "0.0.0.0:2377").rpartition(":")
    if not sep:
        host, port = value, "2377"
    try:
        number = int(port or "2377")
    except ValueError:
        raise InvalidArgument(f"invalid listen address {value!r}") from None
    return host or "0.0.0.0", number


class ClusterServices:
    def __init__(
        self,
        store: Store,
        ca: RootCA,
        tls: NodeTLS,
        node_id: str,
        executor: Callable[[], Forwarder | None] = lambda: None,
        join_on_leader: Callable[[JoinRequest], Awaitable[JoinResponse]] | None = None,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.server = ClusterServer(tls, removed=self._removed)
        self.issuer = CertIssuer(store, ca, join_on_leader=join_on_leader)
        self.dispatcher = Dispatcher(store, node_id)
        self.raft = RaftEndpoint()
        self.forward = ForwardEndpoint(executor)
        # service logs from every node (leader-only, as the dispatcher); the node sets
        # `logs.local_reader`, for its own tasks
        self.logs = LogBroker(store, node_id, lambda: self.dispatcher.leading)
        for part in (self.issuer, self.dispatcher, self.raft, self.forward, self.logs):
            part.register(self.server)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, listen_addr: str, advertise: str, gossip_addr: str = "") -> None:
        host, port = split_listen_addr(listen_addr)
        try:
            bound = await self.server.start(host, port)
        except OSError as exc:
            raise Unavailable(
                f"could not listen on {host}:{port} for the cluster channel: {exc}"
            ) from None
        self.port = bound
        with contextlib.suppress(Unavailable):  # not the leader: its Raft hello records it
            await self._advertise(f"{advertise}:{bound}", gossip_addr)

    def _removed(self, node_id: str) -> bool:
        return any(node_id in (c.removed_nodes or ()) for c in self.store.view().clusters.list())

    def lead(self, leading: bool) -> None:
        """Track liveness while leading, with every node given a full grace from now."""
        if leading and self._task is None:
            self.dispatcher.liveness = Liveness(self.dispatcher.liveness.period)
            self._task = asyncio.create_task(self.dispatcher.run(), name="dispatcher")
        elif not leading and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _advertise(self, addr: str, gossip_addr: str) -> None:
        def fn(tx: Tx) -> None:
            node = tx.nodes.get(self.node_id)
            if node is None or node.manager_status is None:
                return
            status = node.manager_status
            if status.addr != addr or (gossip_addr and node.gossip_addr != gossip_addr):
                status.addr = addr
                node.gossip_addr = gossip_addr or node.gossip_addr
                tx.nodes.update(node)

        await self.store.update(fn)

    def reload(self, tls: NodeTLS) -> None:
        self.server.reload(tls)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.server.stop()
