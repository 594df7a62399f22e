"""UDP side of the userspace mesh: one socket per published port and a flow table.

A flow is (client address, local address it wrote to) -> one backend and a connected
socket towards it. Invariants:
* The first datagram of a flow picks a backend in turn; later ones follow it, so a
  request/answer exchange stays on one task (like a conntrack entry). No ready backend:
  the datagram is dropped.
* Replies from the backend leave from the published port *and* from the local address the
  client wrote to (IP_PKTINFO), so clients with connected sockets accept them.
* A flow whose backend left the pool is closed when the pool changes, and its next
  datagram is balanced anew (what the kernel mesh gets from flushing conntrack entries).
* A flow idle for `idle_timeout` seconds (either direction counts) is closed, like
  conntrack's UDP timeout. At most `max_flows` flows per port; a new client beyond that,
  once idle flows are swept, is dropped.
* With PROXY protocol on, every datagram to the backend starts with a v2 header (UDP)
  naming the client and the address:port it wrote to; replies pass unchanged.
Backpressure is UDP's own: a datagram that cannot be sent now is dropped, never queued.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

from shoal.mesh.errors import MeshError
from shoal.mesh.proxyv2 import header_for
from shoal.mesh.userspace.config import Backend, ListenerSpec, Pool

__all__ = ["UdpListener"]

log = logging.getLogger(__name__)

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux; Python does not export it
_PKTINFO = struct.Struct("=I4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
MAX_DATAGRAM = 65535
BATCH = 64  # datagrams read per wake-up before yielding to the loop

FlowKey = tuple[tuple[str, int], str]  # (client, local address)


def _local_address(ancdata: list[tuple[int, int, bytes]]) -> tuple[str, str] | None:
    """(local address for the reply, destination address of the datagram) from IP_PKTINFO."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            _, spec_dst, addr = _PKTINFO.unpack_from(data)
            return socket.inet_ntoa(spec_dst), socket.inet_ntoa(addr)
    return None


class _Flow:
    __slots__ = ("backend", "client", "header", "key", "last", "listener", "local", "sock")

    def __init__(
        self, listener: UdpListener, key: FlowKey, backend: Backend, header: bytes
    ) -> None:
        self.listener, self.key, self.backend, self.header = listener, key, backend, header
        self.client, self.local = key
        self.last = listener.loop.time()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(backend)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        listener.loop.add_reader(sock.fileno(), self._readable)

    def send(self, data: bytes) -> None:
        self.listener.bytes += len(data)
        try:
            self.sock.send(self.header + data if self.header else data)
        except (BlockingIOError, InterruptedError):
            pass  # a full buffer drops the datagram, as a network would
        except OSError:  # e.g. ECONNREFUSED from an earlier ICMP: the task's port is closed
            self.listener.drop(self)

    def _readable(self) -> None:
        listener = self.listener
        for _ in range(BATCH):
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                listener.drop(self)  # the backend's port is closed: rebalance the next one
                return
            self.last = listener.loop.time()
            listener.bytes += len(data)
            listener.reply(data, self.client, self.local)

    def close(self) -> None:
        self.listener.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class UdpListener:
    """A published UDP port with its flow table. See the module docstring."""

    protocol = "udp"

    def __init__(self, spec: ListenerSpec, *, idle_timeout: float, max_flows: int) -> None:
        self.published = spec.published
        self.service_id = spec.service_id
        self.pool = Pool(spec.target, spec.backends)
        self.proxy_protocol = spec.proxy_protocol
        self.idle_timeout = idle_timeout
        self.max_flows = max_flows
        self.flows: dict[FlowKey, _Flow] = {}
        self.loop = asyncio.get_running_loop()
        self.sock: socket.socket | None = None
        self._host = ""
        self._timer: asyncio.TimerHandle | None = None
        self._full_logged = False
        self.connections = 0  # flows opened to a backend, since the port opened
        self.bytes = 0  # payload relayed, both directions

    async def open(self, host: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind((host, self.published))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise MeshError(
                f"mesh: cannot listen on udp/{self.published} (is the published port in use "
                f"by another program on this node?): {exc.strerror or exc}"
            ) from exc
        self.sock, self._host = sock, host
        self.loop.add_reader(sock.fileno(), self._readable)

    def update(self, spec: ListenerSpec) -> None:
        proxy_changed = spec.proxy_protocol != self.proxy_protocol
        self.pool.update(spec.target, spec.backends)
        self.service_id, self.proxy_protocol = spec.service_id, spec.proxy_protocol
        for flow in list(self.flows.values()):
            if proxy_changed or flow.backend not in self.pool:
                self.drop(flow)

    def close(self, *, abort: bool = False) -> None:
        """Stop listening and forget every flow (a UDP flow has nothing to drain)."""
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for flow in list(self.flows.values()):
            self.drop(flow)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ---------------------------------------------------------------------- datagrams
    def _readable(self) -> None:
        for _ in range(BATCH):
            if self.sock is None:
                return
            try:
                data, ancdata, _, client = self.sock.recvmsg(MAX_DATAGRAM,
                                                             socket.CMSG_SPACE(_PKTINFO.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("mesh: udp/%d: receive: %s", self.published, exc)
                return
            self._forward(data, client, _local_address(ancdata))

    def _forward(self, data: bytes, client: tuple[str, int], local: tuple[str, str] | None
                 ) -> None:
        reply_from, destination = local if local is not None else (self._host, self._host)
        key: FlowKey = (client, reply_from)
        flow = self.flows.get(key)
        if flow is not None and flow.backend not in self.pool:
            self.drop(flow)
            flow = None
        if flow is None:
            flow = self._new_flow(key, client, destination)
            if flow is None:
                return
        flow.last = self.loop.time()
        flow.send(data)

    def _new_flow(self, key: FlowKey, client: tuple[str, int], destination: str
                  ) -> _Flow | None:
        backend = self.pool.pick()
        if backend is None:
            return None  # no ready endpoint: dropped
        if len(self.flows) >= self.max_flows:
            self._sweep(rearm=False)
            if len(self.flows) >= self.max_flows:
                if not self._full_logged:
                    log.warning("mesh: udp/%d: %d flows, dropping new clients' datagrams",
                                self.published, self.max_flows)
                    self._full_logged = True
                return None
        header = header_for("udp", client, (destination, self.published)) \
            if self.proxy_protocol else b""
        try:
            flow = _Flow(self, key, backend, header)
        except OSError as exc:
            log.warning("mesh: udp/%d: cannot open a flow to %s:%d: %s",
                        self.published, backend[0], backend[1], exc)
            return None
        self.flows[key] = flow
        self.connections += 1
        if self._timer is None:
            self._arm()
        return flow

    def reply(self, data: bytes, client: tuple[str, int], local: str) -> None:
        if self.sock is None:
            return
        try:
            if local and local != "0.0.0.0":
                info = _PKTINFO.pack(0, socket.inet_aton(local), bytes(4))
                self.sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, client)
            else:
                self.sock.sendto(data, client)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            log.debug("mesh: udp/%d: reply to %s: %s", self.published, client, exc)

    def drop(self, flow: _Flow) -> None:
        if self.flows.get(flow.key) is flow:
            del self.flows[flow.key]
            flow.close()

    # ------------------------------------------------------------------ idle timeout
    def _arm(self) -> None:
        interval = max(min(self.idle_timeout / 3, 5.0), 0.01)
        self._timer = self.loop.call_later(interval, self._sweep)

    def _sweep(self, rearm: bool = True) -> None:
        if rearm:
            self._timer = None
        horizon = self.loop.time() - self.idle_timeout
        for flow in [f for f in self.flows.values() if f.last < horizon]:
            self.drop(flow)
        if len(self.flows) < self.max_flows:
            self._full_logged = False
        if rearm and self.flows and self.sock is not None:
            self._arm()
