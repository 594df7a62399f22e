"""`UserspaceDataPlane`: the `DataPlane` protocol over asyncio listeners, one per open port.

`apply(state)` computes the listeners the state asks for (`config.listener_specs`, the
kernel planner's port selection) and moves to them by difference: a port that left is
closed, a port that stayed is updated in place (its pool, target and PROXY flag; the
listening socket is not touched), a new port is bound. Applying the same state again
changes nothing. Calls are serialised by a lock; the last call wins.

Atomicity is per port, not per state (a deviation from the protocol's wording, on
purpose): a port that cannot be bound (another program holds it) does not stop the rest of
the state from being applied, since holding back every endpoint change because of one busy
port would send new connections to removed tasks. The ports that failed are named in one
`MeshError` raised at the end; the next `apply` tries to bind them again.

The first `apply` also deletes a kernel mesh table (`inet shoal`) an earlier daemon in
kernel mode may have left: its DNAT rules would take the published ports' traffic before it
reaches a socket, towards endpoints nobody updates any more. Best effort (no `nft`, no
table: nothing to do), and never in the initial network namespace (the real host's
firewall is not ours), like `KernelDataPlane`.
"""

from __future__ import annotations

import asyncio
import logging
import os

from shoal.mesh.errors import MeshError
from shoal.mesh.kernel import in_root_netns
from shoal.mesh.model import MeshState
from shoal.mesh.traffic import PortTraffic
from shoal.mesh.userspace.config import ListenerSpec, listener_specs
from shoal.mesh.userspace.tcp import TcpListener
from shoal.mesh.userspace.udp import UdpListener

__all__ = ["Listener", "UserspaceDataPlane"]

log = logging.getLogger(__name__)

Listener = TcpListener | UdpListener


class UserspaceDataPlane:
    """`DataPlane` as an asyncio L4 proxy in this process (see the package docstring).

    `host` is the address every published port listens on: all of the node's addresses
    (0.0.0.0) by default, like the kernel mesh; tests use 127.0.0.1.
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        *,
        connect_timeout: float = 2.0,
        udp_idle_timeout: float = 30.0,
        udp_max_flows: int = 4096,
        backlog: int = 1024,
        kernel_table: str | None = "shoal",
    ) -> None:
        self.host = host
        self.connect_timeout = connect_timeout
        self.udp_idle_timeout = udp_idle_timeout
        self.udp_max_flows = udp_max_flows
        self.backlog = backlog
        self._kernel_table = kernel_table  # None: leave nftables alone
        self._listeners: dict[tuple[str, int], Listener] = {}
        self._specs: dict[tuple[str, int], ListenerSpec] = {}  # what each listener runs
        self._lock = asyncio.Lock()
        self._problems: tuple[str, ...] = ()

    def listener(self, protocol: str, published: int) -> Listener | None:
        """The live listener of a port (for inspection and tests)."""
        return self._listeners.get((protocol, published))

    @property
    def ports(self) -> list[tuple[str, int]]:
        return sorted(self._listeners)

    async def traffic(self) -> dict[tuple[str, int], PortTraffic]:
        """Connections and bytes per (protocol, published port): the listeners' own counters."""
        return {key: PortTraffic(listener.connections, listener.bytes)
                for key, listener in self._listeners.items()}

    async def apply(self, state: MeshState) -> None:
        async with self._lock:
            await self._remove_kernel_mesh()
            specs, problems = listener_specs(state)
            self._report(problems)
            for key in sorted(self._listeners.keys() - specs.keys()):
                self._listeners.pop(key).close()
                log.info("mesh: closed %s/%d", *key)
            for key in sorted(self._listeners.keys() & specs.keys()):
                if specs[key] != self._specs.get(key):
                    self._update(self._listeners[key], specs[key])
            failed: list[str] = []
            for key in sorted(specs.keys() - self._listeners.keys()):
                try:
                    self._listeners[key] = await self._open(specs[key])
                except MeshError as exc:
                    failed.append(exc.message)
            self._specs = {k: v for k, v in specs.items() if k in self._listeners}
            if failed:
                raise MeshError("; ".join(failed))

    async def close(self) -> None:
        """Close every listener, flow and relayed connection."""
        async with self._lock:
            for listener in self._listeners.values():
                listener.close(abort=True)
            self._listeners.clear()
            self._specs.clear()

    async def _open(self, spec: ListenerSpec) -> Listener:
        listener: Listener
        if spec.protocol == "tcp":
            listener = TcpListener(spec, connect_timeout=self.connect_timeout,
                                   backlog=self.backlog)
        else:
            listener = UdpListener(spec, idle_timeout=self.udp_idle_timeout,
                                   max_flows=self.udp_max_flows)
        await listener.open(self.host)
        log.info("mesh: listening on %s/%d for service %s (%d backends%s)", spec.protocol,
                 spec.published, spec.service_id, len(spec.backends),
                 ", PROXY v2" if spec.proxy_protocol else "")
        return listener

    @staticmethod
    def _update(listener: Listener, spec: ListenerSpec) -> None:
        before = len(listener.pool)
        listener.update(spec)
        if bool(before) != bool(spec.backends):  # the transitions an operator cares about
            log.info("mesh: %s/%d of service %s %s", spec.protocol, spec.published,
                     spec.service_id, f"serves {len(spec.backends)} backend(s)" if spec.backends
                     else "has no ready backend: refusing")
        else:
            log.debug("mesh: %s/%d: %d backends", spec.protocol, spec.published,
                      len(spec.backends))

    async def _remove_kernel_mesh(self) -> None:
        table, self._kernel_table = self._kernel_table, None  # once per process
        if table is None:
            return
        if in_root_netns() and os.environ.get("SHOAL_ALLOW_ROOT_NETNS") != "1":
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                "nft", "delete", "table", "inet", table,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError:
            return  # no nft here: no kernel mesh either
        if await proc.wait() == 0:
            log.info("mesh: removed the kernel mesh table inet %s left by an earlier daemon",
                     table)

    def _report(self, problems: tuple[str, ...]) -> None:
        if problems != self._problems:
            for problem in problems:
                log.warning("mesh: %s", problem)
            self._problems = problems
