"""`WorkerRole`: what a node runs while it is a worker (swarmkit's agent side of node.go).

A worker has no store. Its agent's session is a `RemoteSession` with the managers'
dispatcher over 2377, which also feeds the node network its published ports and network
view (`PortFeed`, `NetFeed`); its certificate is renewed by a manager (`CA/Renew` over the
same session). The role polls `CA/Role` to learn when it is promoted, on a channel it keeps
open between polls (issue 13: a new TLS connection every 2 s was most of an idle worker's
and a good part of an idle manager's CPU). Stopping the role cancels the session and the
renewal and closes that channel; nothing of it survives into a manager role.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from shoal.agent.log_publisher import LogPublisher
from shoal.agent.session_client import RemoteSession
from shoal.ca.files import NodeTLS
from shoal.ca.renewal import CertRenewer
from shoal.cluster.client import ClusterClient
from shoal.cluster.wire import Empty
from shoal.errors import ShoalError
from shoal.manager.issuer import RoleResponse
from shoal.node.mesh_sync import PortFeed
from shoal.node.network import NetFeed
from shoal.wakeups import GRID, sleep_riding

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
        log_path: Callable[[str], Path] | None = None,
    ) -> None:
        self._managers = managers
        self._log_path = log_path
        self._tls = tls
        self._hostname = hostname
        self._addr = addr
        self._on_managers = on_managers
        self.ports = PortFeed()
        self.net = NetFeed()
        self.session: RemoteSession | None = None
        self.renewer: CertRenewer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # the `CA/Role` poll's channel: (manager address, certificate it presents), client
        self._role_client: tuple[tuple[str, bytes], ClusterClient] | None = None

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
            logs=LogPublisher(self._log_path) if self._log_path is not None else None,
        )
        self.session = session
        self.renewer = CertRenewer(self._tls, session.renew, save_tls, random.Random())
        self._tasks = [
            asyncio.create_task(session.run(), name="session"),
            asyncio.create_task(self.renewer.run(), name="cert-renewal"),
        ]
        return session

    async def role_may_change(self, poll: float) -> None:
        # asked of a manager: a poll, with a ticker's wake-up, never later than `poll`
        await sleep_riding(max(0.0, poll - 0.5), 0.5 - GRID)

    async def wanted_role(self) -> str | None:
        """The role the managers want for this node (`CA/Role`), None if none answers."""
        addrs = self.manager_addrs()
        if self._role_client is not None and self._role_client[0][0] in addrs:
            addrs.remove(self._role_client[0][0])
            addrs.insert(0, self._role_client[0][0])  # the manager that answered last
        for addr in addrs:
            client = await self._role_channel(addr)
            try:
                answer = await client.call("CA/Role", Empty(), RoleResponse, timeout=5.0)
            except ShoalError:
                await self._close_role_channel()
                continue
            return answer.role
        return None

    async def _role_channel(self, addr: str) -> ClusterClient:
        tls = self._tls()
        key = (addr, tls.cert_pem)
        if self._role_client is not None and self._role_client[0] == key:
            return self._role_client[1]
        await self._close_role_channel()  # another manager, or a renewed certificate
        client = ClusterClient(addr, tls.ca_pem, tls)
        self._role_client = (key, client)
        return client

    async def _close_role_channel(self) -> None:
        if self._role_client is not None:
            client, self._role_client = self._role_client[1], None
            await asyncio.shield(client.close())

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
        await self._close_role_channel()
