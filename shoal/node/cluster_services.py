"""What a manager serves on 2377: joins and renewals, the dispatcher, Raft.Send.

Started once the store is open and this node has its certificate; `addr` is what it
advertises to other nodes (the advertise address with the port actually listened on, so a
listener on port 0 in tests advertises the port it got).
"""

from __future__ import annotations

import asyncio
import logging

from shoal.ca.files import NodeTLS
from shoal.ca.issuer import CertIssuer
from shoal.ca.root import RootCA
from shoal.cluster.raft import RaftEndpoint
from shoal.cluster.server import ClusterServer
from shoal.errors import InvalidArgument, Unavailable
from shoal.manager.dispatcher.dispatcher import Dispatcher
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
    def __init__(self, store: Store, ca: RootCA, tls: NodeTLS, node_id: str) -> None:
        self.store = store
        self.node_id = node_id
        self.server = ClusterServer(tls)
        self.issuer = CertIssuer(store, ca)
        self.dispatcher = Dispatcher(store, node_id)
        self.raft = RaftEndpoint()
        for part in (self.issuer, self.dispatcher, self.raft):
            part.register(self.server)
        self._task: asyncio.Task[None] | None = None

    async def start(self, listen_addr: str, advertise: str, gossip_addr: str = "") -> None:
        host, port = split_listen_addr(listen_addr)
        try:
            bound = await self.server.start(host, port)
        except OSError as exc:
            raise Unavailable(
                f"could not listen on {host}:{port} for the cluster channel: {exc}"
            ) from None
        await self._advertise(f"{advertise}:{bound}", gossip_addr)
        self._task = asyncio.create_task(self.dispatcher.run(), name="dispatcher")

    async def _advertise(self, addr: str, gossip_addr: str) -> None:
        def fn(tx: Tx) -> None:
            node = tx.get("node", self.node_id)
            if node is None or node.manager_status is None:
                return
            status = node.manager_status
            if status.addr != addr or (gossip_addr and node.gossip_addr != gossip_addr):
                status.addr = addr
                node.gossip_addr = gossip_addr or node.gossip_addr
                tx.update("node", node)

        await self.store.update(fn)

    def reload(self, tls: NodeTLS) -> None:
        self.server.reload(tls)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.server.stop()
