"""The node's embedded DNS: 127.0.0.11:53 (UDP and TCP) inside each local task's netns.

`NodeDns` follows the endpoint table: a local task with overlay attachments whose network
namespace exists gets its two sockets (made inside that namespace by a short-lived thread,
see `netns`), served by this event loop; a task that leaves the table loses them. Every
answer reads the current `NameTable`, rebuilt when the table's version changes, so a task
that stops being ready leaves `tasks.X` and dnsrr answers at the next query.

Forwarders: the node's resolvers (nameservers of the host's /etc/resolv.conf) unless
`SHOAL_DNS_FORWARDERS` says otherwise (a comma list, or `none`: the lab's setting, so no
query ever leaves the lab). Forwarding happens from the daemon's own namespace.

dnspython (~2.9 MiB of RSS with what it imports: importlib.metadata, zipfile, csv...) is
imported when the first task is served (`TaskDns`) or resolv.conf is read, not with this
module: a node without tasks on an overlay network (an idle one) does not carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from shoal import timeouts
from shoal.agent.dns.attachments import service_attachments, table_attachments
from shoal.agent.dns.names import NameTable
from shoal.agent.dns.netns import DNS_ADDRESS, sockets_in_netns
from shoal.api.netview import NetService
from shoal.gossip.table import EndpointTable

if TYPE_CHECKING:
    import dns.message

    from shoal.agent.dns.wire import Forwarder

__all__ = ["NodeDns", "TaskDns", "forwarders_from_env", "make_forwarder", "node_dns"]

log = logging.getLogger(__name__)
FORWARD_TIMEOUT = 2.0
TCP_IDLE = 10.0


def forwarders_from_env(resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    setting = os.environ.get("SHOAL_DNS_FORWARDERS")
    if setting is not None:
        return [] if setting.strip() in ("", "none") else [
            s.strip() for s in setting.split(",") if s.strip()
        ]
    import dns.exception
    import dns.resolver

    try:
        resolver = dns.resolver.Resolver(filename=resolv_conf, configure=True)
    except (OSError, dns.exception.DNSException):
        return []
    return [str(n) for n in resolver.nameservers]


def make_forwarder(servers: list[str]) -> Forwarder | None:
    if not servers:
        return None

    async def forward(query: dns.message.Message) -> dns.message.Message | None:
        import dns.asyncquery
        import dns.exception

        for server in servers:
            try:
                return await dns.asyncquery.udp(query, server, timeout=FORWARD_TIMEOUT)
            except (OSError, dns.exception.DNSException) as exc:
                log.debug("dns: forwarder %s failed: %s", server, exc)
        return None

    return forward


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: TaskDns) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner.spawn(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        wire = await self.owner.respond(data, tcp=False)
        if wire is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(wire, addr)


class TaskDns:
    """One task's two sockets and the queries in flight on them."""

    def __init__(
        self, task_id: str, table: Callable[[], NameTable], forward: Forwarder | None
    ) -> None:
        from shoal.agent.dns.wire import answer  # dnspython: with the first task served

        self._answer = answer
        self.task_id = task_id
        self._table = table
        self._forward = forward
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def open(self, netns_path: str) -> None:
        udp, tcp = sockets_in_netns(netns_path)
        loop = asyncio.get_running_loop()
        try:
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        except BaseException:
            udp.close()
            tcp.close()
            await self.close()
            raise

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def respond(self, data: bytes, tcp: bool) -> bytes | None:
        try:
            return await self._answer(data, self._table(), self.task_id, self._forward, tcp=tcp)
        except Exception:  # one bad query must never stop the server
            log.exception("dns: query from task %s failed", self.task_id)
            return None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await timeouts.wait_for(reader.readexactly(2), TCP_IDLE)
                data = await timeouts.wait_for(reader.readexactly(struct.unpack("!H", head)[0]),
                                              TCP_IDLE)
                wire = await self.respond(data, tcp=True)
                if wire is None:
                    break
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
        for task in list(self._inflight):
            task.cancel()


class NodeDns:
    """Sockets for every local task with overlay attachments (see module doc)."""

    def __init__(
        self,
        node_id: str,
        endpoints: EndpointTable,
        netns_path: Callable[[str], Path],
        forward: Forwarder | None,
        services: Callable[[], tuple[NetService, ...]] = tuple,
    ) -> None:
        self.node_id = node_id
        self.endpoints = endpoints
        self.netns_path = netns_path
        self.forward = forward
        self.services = services  # the managers' service records (names without tasks)
        self.tasks: dict[str, TaskDns] = {}
        self._table = NameTable([])
        self._table_version: tuple[int, tuple[NetService, ...]] = (-1, ())
        self._lock = asyncio.Lock()  # the loop and a task's start hook both sync

    def table(self) -> NameTable:
        version = (self.endpoints.version, self.services())
        if self._table_version != version:
            self._table_version = version
            self._table = NameTable([*table_attachments(self.endpoints.entries()),
                                     *service_attachments(version[1])])
        return self._table

    async def run(self) -> None:
        """Follow the endpoint table until cancelled; every socket is closed on the way out."""
        try:
            while True:
                seen = self.endpoints.version
                await self.sync()
                await self.endpoints.wait_change(seen)
        finally:
            await self.close()

    async def sync(self) -> None:
        async with self._lock:
            await self._sync()

    async def _sync(self) -> None:
        wanted = {
            e.task_id for e in self.endpoints.entries() if e.node_id == self.node_id and e.networks
        }
        for task_id in sorted(set(self.tasks) - wanted):
            await self.tasks.pop(task_id).close()
        for task_id in sorted(wanted - set(self.tasks)):
            path = self.netns_path(task_id)
            if not path.exists():
                continue
            served = TaskDns(task_id, self.table, self.forward)
            try:
                await served.open(str(path))
            except OSError as exc:
                log.warning("dns: cannot serve task %s at %s: %s", task_id, DNS_ADDRESS, exc)
                continue
            self.tasks[task_id] = served

    async def close(self) -> None:
        served, self.tasks = list(self.tasks.values()), {}
        for one in served:
            await one.close()


def node_dns(
    node_id: str, endpoints: EndpointTable, runtime: object,
    services: Callable[[], tuple[NetService, ...]] = tuple,
) -> NodeDns | None:
    """The node's DNS with the forwarders of its environment (see module doc), for a
    runtime that puts tasks in named network namespaces (None for other runtimes)."""
    netns_dir = getattr(runtime, "netns_dir", None)
    netns_name = getattr(runtime, "netns_name", None)
    if not isinstance(netns_dir, Path) or not callable(netns_name):
        return None

    def netns_path(task_id: str) -> Path:
        return netns_dir / str(netns_name(task_id))

    return NodeDns(node_id, endpoints, netns_path, make_forwarder(forwarders_from_env()),
                   services)
