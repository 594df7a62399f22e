"""`Overlay`: this node's end of the cluster's VXLAN overlay (one device, flannel style).

    apply(peers)  program the device and one route + neighbour + fdb entry per remote node,
                  touching only what differs from what the kernel holds
    close()       delete the device (its entries go with it)

Knowledge of the kernel: the first apply (and the first after a failure) reads the device
and its entries back, so a restarted daemon adopts what an earlier one left and traffic to
unchanged peers goes on undisturbed; afterwards the outcome of each apply is known from the
planner's model (`plan.simulate`) and nothing is read again. Something else editing the
device behind our back is noticed after the next failure, or after `invalidate()`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from typing import Protocol

from shoal.errors import InvalidArgument
from shoal.mesh.overlay.model import (
    DeviceSpec,
    OverlayPeer,
    overlay_mtu,
    parse_address,
    parse_subnet,
    select_remotes,
    vtep_mac,
)
from shoal.mesh.overlay.netlink import NetlinkKernel
from shoal.mesh.overlay.plan import KernelView, Op, plan, simulate

__all__ = ["Overlay", "OverlayKernel"]

log = logging.getLogger(__name__)


class OverlayKernel(Protocol):
    """What `Overlay` needs from the kernel (`NetlinkKernel`; fakes in unit tests)."""

    async def underlay(self, address: ipaddress.IPv4Address) -> tuple[int, int]:
        """(ifindex, MTU) of the link holding `address`."""
        ...

    async def read(self, device: str) -> KernelView: ...

    async def execute(self, device: str, ops: Sequence[Op]) -> None:
        """Carry out `ops` in the given order, stopping at the first failure."""
        ...

    async def remove(self, device: str) -> bool:
        """Delete the device if it exists; whether it did."""
        ...


class Overlay:
    """The local VXLAN device and the entries towards every other node (module docstring)."""

    def __init__(
        self,
        local_underlay: str,
        local_subnet: str,
        vni: int = 4096,
        port: int = 4789,
        device: str = "shoal.4096",
        *,
        kernel: OverlayKernel | None = None,
    ) -> None:
        if not 1 <= vni < 1 << 24:
            raise InvalidArgument(f"overlay: VNI {vni} is outside 1..16777215")
        if not 1 <= port <= 65535:
            raise InvalidArgument(f"overlay: data path port {port} is outside 1..65535")
        if not 0 < len(device) <= 15 or "/" in device or " " in device:
            raise InvalidArgument(f"overlay: invalid device name {device!r}")
        self.local_underlay = parse_address(local_underlay)
        self.local_subnet = parse_subnet(local_subnet, "local subnet")
        self.vni, self.port, self.device = vni, port, device
        self._kernel: OverlayKernel = kernel if kernel is not None else NetlinkKernel()
        self._lock = asyncio.Lock()
        self._spec: DeviceSpec | None = None
        self._view: KernelView | None = None  # None: unknown, read it before planning
        self._problems: tuple[str, ...] = ()
        self.last_ops: tuple[Op, ...] = ()  # the last apply's operations (debugging, tests)

    @property
    def mac(self) -> str:
        """This node's VTEP MAC (derived from its subnet, see `model.vtep_mac`)."""
        return vtep_mac(self.local_subnet)

    @property
    def mtu(self) -> int | None:
        """The device's MTU (underlay MTU - 50) once known: what task interfaces should use
        to avoid relying on path MTU discovery across nodes."""
        return self._spec.mtu if self._spec is not None else None

    async def apply(self, peers: Sequence[OverlayPeer]) -> None:
        """Make the kernel hold exactly the entries for `peers` (this node's own entry and
        conflicting claims are skipped and logged). Idempotent; only differences are sent."""
        async with self._lock:
            selection = select_remotes(self.local_underlay, self.local_subnet, peers)
            self._report(selection.problems)
            try:
                spec, view = await self._known()
                ops = plan(spec, selection.remotes, view)
                after = simulate(view, ops)
                self.last_ops = tuple(ops)
                await self._kernel.execute(self.device, ops)
            except BaseException:
                self._spec = self._view = None  # re-read everything next time
                raise
            self._spec, self._view = spec, after
            if ops:
                log.info(
                    "overlay: %d operation(s) for %d remote node(s) on %s",
                    len(ops), len(selection.remotes), self.device,
                )

    def invalidate(self) -> None:
        """Forget what the kernel holds: the next apply reads it back and repairs whatever
        was changed behind our back (e.g. the device vanished with its underlay link). Cheap
        enough to call every minute or so, as anti-entropy."""
        self._spec = self._view = None

    async def close(self) -> None:
        """Delete the device, with every route, neighbour and fdb entry on it. Idempotent."""
        async with self._lock:
            self._spec = self._view = None
            if await self._kernel.remove(self.device):
                log.info("overlay: removed %s", self.device)

    async def _known(self) -> tuple[DeviceSpec, KernelView]:
        if self._spec is not None and self._view is not None:
            return self._spec, self._view
        link, underlay_mtu = await self._kernel.underlay(self.local_underlay)
        spec = DeviceSpec(
            name=self.device,
            vni=self.vni,
            port=self.port,
            local=self.local_underlay,
            link=link,
            mac=self.mac,
            mtu=overlay_mtu(underlay_mtu),
            address=self.local_subnet.network_address,
        )
        return spec, await self._kernel.read(self.device)

    def _report(self, problems: tuple[str, ...]) -> None:
        if problems != self._problems:
            for problem in problems:
                log.warning("overlay: %s", problem)
            self._problems = problems
