"""`WorkerRole`: what a node runs while it is a worker (swarmkit's agent side of node.go).

A worker has no store. Its agent's session is a `RemoteSession` with the managers'
dispatcher over 2377, which also feeds the node network its published ports and network
view (`PortFeed`, `NetFeed`); its certificate is renewed by a manager (`CA/Renew` over the
same session). The role polls `CA/Role` to learn when it is promoted. Stopping the role
cancels the session and the renewal; nothing of it survives into a manager role.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import TypeVar

from shoal.agent.session_client import RemoteSession
from shoal.ca.files import NodeTLS
from shoal.ca.renewal import CertRenewer
from shoal.cluster.client import ClusterClient
from shoal.cluster.wire import Empty
from shoal.errors import ShoalError
from shoal.manager.issuer import RoleResponse
from shoal.node.mesh_sync import PortFeed
from shoal.node.network import NetFeed

__all__ = ["WorkerRole", "call_manager"]

T = TypeVar("T")


async def call_manager(tls: NodeTLS, addr: str, name: str, req: object, kind: type[T]) -> T:
    """One 2377 call on the manager at `addr`, on a connection of its own."""
    client = ClusterClient(addr, tls.ca_pem, tls)
    try:
        return await client.call(name, req, kind, timeout=5.0)
    finally:
        await asyncio.shield(client.close())


class WorkerRole:
    kind = "worker"

    def __init__(
        self,
        managers: Callable[[], list[str]],
        tls: Callable[[], NodeTLS],
        hostname: str,
        addr: str,
        on_managers: Callable[[list[str]], None],
    ) -> None:
        self._managers = managers
        self._tls = tls
        self._hostname = hostname
        self._addr = addr
        self._on_managers = on_managers
        self.ports = PortFeed()
        self.net = NetFeed()
        self.session: RemoteSession | None = None
        self.renewer: CertRenewer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, gossip_addr: str, save_tls: Callable[[NodeTLS], None]) -> RemoteSession:
        """Open the session to the managers and start renewing; the session (for the agent)."""
        session = RemoteSession(
            self._managers(),
            self._tls,
            self._hostname,
            self._addr,
            on_managers=self._on_managers,
            on_ports=self.ports.set,
            on_network=self.net.set,
            gossip_addr=gossip_addr,
        )
        self.session = session
        self.renewer = CertRenewer(self._tls, session.renew, save_tls, random.Random())
        self._tasks = [
            asyncio.create_task(session.run(), name="session"),
            asyncio.create_task(self.renewer.run(), name="cert-renewal"),
        ]
        return session

    async def wanted_role(self) -> str | None:
        """The role the managers want for this node (`CA/Role`), None if none answers."""
        for addr in self.manager_addrs():
            with contextlib.suppress(ShoalError):
                answer = await call_manager(self._tls(), addr, "CA/Role", Empty(), RoleResponse)
                return answer.role
        return None

    def manager_addrs(self) -> list[str]:
        return list(self._managers())

    def reload(self, tls: NodeTLS) -> None:
        """Nothing listens here: the next session connection presents `tls`."""

    def background_tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
