"""The overlay's executor: reads and programs the VXLAN device with pyroute2 (netlink).

Acts on the *current* network namespace (the daemon runs inside a lab host's) and refuses
the initial one unless SHOAL_ALLOW_ROOT_NETNS=1, before sending a single netlink message.
Each operation is one netlink request, sent in the order `plan` gives (the ordering carries
the overlay's atomicity, see `plan.py`); a failure stops the batch and is raised as
`MeshError` naming the operation, after which the caller must re-read the kernel.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import flags as nd_flags
from pyroute2.netlink.rtnl.ndmsg import states as nd_states

from shoal.mesh.errors import MeshError
from shoal.mesh.kernel import in_root_netns
from shoal.mesh.overlay.plan import (
    AddAddress,
    ConfigureDevice,
    CreateDevice,
    DelAddress,
    DeleteDevice,
    DelFdb,
    DelNeigh,
    DelRoute,
    DeviceView,
    KernelView,
    Op,
    RouteKey,
    SetFdb,
    SetNeigh,
    SetRoute,
)

__all__ = ["NetlinkKernel", "check_netns"]

_RTNH_F_ONLINK = 4
_RT_TABLE_MAIN = 254
_RTN_UNICAST = 1
_IFF_UP = 1
_ENODEV = 19
_NUD_PERMANENT = nd_states["permanent"]
_ADDR_GEN_MODE_NONE = 1


def check_netns(in_root: Callable[[], bool] = in_root_netns) -> None:
    """Refuse the initial network namespace (the real host) unless explicitly allowed."""
    if os.environ.get("SHOAL_ALLOW_ROOT_NETNS") == "1":
        return
    if in_root():
        raise MeshError(
            "overlay: refusing to program a VXLAN device in the initial network namespace "
            "(run the node in its own namespace, or set SHOAL_ALLOW_ROOT_NETNS=1)"
        )


async def _index(ipr: AsyncIPRoute, name: str) -> int | None:
    found = await ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _data(msg: Any, *path: str) -> Any:
    """Nested NLA lookup (`IFLA_LINKINFO` -> `IFLA_INFO_DATA` -> ...); None when absent."""
    for name in path:
        if msg is None:
            return None
        msg = msg.get(name)
    return msg


class NetlinkKernel:
    """`OverlayKernel` on the current network namespace's netlink (see module docstring).

    `in_root` tells whether this process is in the initial network namespace (injectable
    so that the refusal itself can be tested anywhere).
    """

    def __init__(self, in_root: Callable[[], bool] = in_root_netns) -> None:
        self._in_root = in_root

    async def underlay(self, address: ipaddress.IPv4Address) -> tuple[int, int]:
        """(ifindex, MTU) of the link holding `address`; MeshError if none does."""
        check_netns(self._in_root)
        try:
            async with AsyncIPRoute() as ipr:
                async for msg in await ipr.addr("dump", family=socket.AF_INET):
                    if msg.get("IFA_ADDRESS") == str(address):
                        index = int(msg["index"])
                        (link,) = await ipr.link("get", index=index)
                        return index, int(link.get("IFLA_MTU"))
        except NetlinkError as exc:
            raise MeshError(f"overlay: reading the underlay link failed: {exc}") from exc
        raise MeshError(f"overlay: no interface of this node holds the underlay address {address}")

    async def read(self, device: str) -> KernelView:
        """The device and its routes, neighbours and fdb entries as the kernel holds them."""
        check_netns(self._in_root)
        try:
            async with AsyncIPRoute() as ipr:
                index = await _index(ipr, device)
                if index is None:
                    return KernelView()
                return KernelView(
                    device=await self._device(ipr, index),
                    routes=await self._routes(ipr, index),
                    neighbours=await self._neighbours(ipr, index),
                    fdb=await self._fdb(ipr, index),
                )
        except NetlinkError as exc:
            raise MeshError(f"overlay: reading {device} failed: {exc}") from exc

    async def execute(self, device: str, ops: Sequence[Op]) -> None:
        """Carry out `ops` in order; MeshError naming the first one that fails."""
        check_netns(self._in_root)
        if not ops:
            return
        async with AsyncIPRoute() as ipr:
            index = await _index(ipr, device)
            for op in ops:
                try:
                    index = await self._run(ipr, device, index, op)
                except NetlinkError as exc:
                    raise MeshError(f"overlay: `{op}` failed: {exc}") from exc

    async def remove(self, device: str) -> bool:
        """Delete the device (its routes, neighbours and fdb entries go with it)."""
        check_netns(self._in_root)
        try:
            async with AsyncIPRoute() as ipr:
                index = await _index(ipr, device)
                if index is None:
                    return False
                await ipr.link("del", index=index)
                return True
        except NetlinkError as exc:
            if exc.code == _ENODEV:
                return False
            raise MeshError(f"overlay: deleting {device} failed: {exc}") from exc

    # -- reading ---------------------------------------------------------------------
    @staticmethod
    async def _device(ipr: AsyncIPRoute, index: int) -> DeviceView:
        (link,) = await ipr.link("get", index=index)
        info = _data(link, "IFLA_LINKINFO")
        data = _data(info, "IFLA_INFO_DATA")
        local = _data(data, "IFLA_VXLAN_LOCAL")
        addresses = {
            ipaddress.IPv4Interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
            async for m in await ipr.addr("dump", index=index, family=socket.AF_INET)
        }
        return DeviceView(
            kind=str(_data(info, "IFLA_INFO_KIND") or ""),
            vni=int(_data(data, "IFLA_VXLAN_ID") or 0),
            port=int(_data(data, "IFLA_VXLAN_PORT") or 0),
            local=ipaddress.IPv4Address(local) if local else None,
            link=int(_data(data, "IFLA_VXLAN_LINK") or 0),
            learning=bool(_data(data, "IFLA_VXLAN_LEARNING")),
            mac=str(link.get("IFLA_ADDRESS")),
            mtu=int(link.get("IFLA_MTU")),
            addresses=frozenset(addresses),
            up=bool(link["flags"] & _IFF_UP),
        )

    @staticmethod
    async def _routes(
        ipr: AsyncIPRoute, index: int
    ) -> dict[RouteKey, ipaddress.IPv4Address | None]:
        routes: dict[RouteKey, ipaddress.IPv4Address | None] = {}
        async for m in await ipr.route("dump", family=socket.AF_INET):
            table = m.get("RTA_TABLE") or m["table"]
            if m.get("RTA_OIF") != index or table != _RT_TABLE_MAIN or m["type"] != _RTN_UNICAST:
                continue
            dst = ipaddress.IPv4Network(f"{m.get('RTA_DST') or '0.0.0.0'}/{m['dst_len']}")
            gateway = m.get("RTA_GATEWAY")
            routes[(dst, int(m.get("RTA_PRIORITY") or 0))] = (
                ipaddress.IPv4Address(gateway) if gateway else None
            )
        return routes

    @staticmethod
    async def _neighbours(ipr: AsyncIPRoute, index: int) -> dict[ipaddress.IPv4Address, str | None]:
        found: dict[ipaddress.IPv4Address, str | None] = {}
        async for m in await ipr.neigh("dump", ifindex=index, family=socket.AF_INET):
            if m["ifindex"] != index or not m.get("NDA_DST"):
                continue
            mac = m.get("NDA_LLADDR")
            permanent = m["state"] & _NUD_PERMANENT
            found[ipaddress.IPv4Address(m.get("NDA_DST"))] = str(mac) if permanent and mac else None
        return found

    @staticmethod
    async def _fdb(ipr: AsyncIPRoute, index: int) -> dict[str, frozenset[ipaddress.IPv4Address]]:
        found: dict[str, set[ipaddress.IPv4Address]] = {}
        async for m in await ipr.fdb("dump", ifindex=index):
            dst, mac = m.get("NDA_DST"), m.get("NDA_LLADDR")
            if m["ifindex"] != index or not dst or not mac:
                continue
            found.setdefault(str(mac), set()).add(ipaddress.IPv4Address(dst))
        return {mac: frozenset(dsts) for mac, dsts in found.items()}

    # -- writing ---------------------------------------------------------------------
    async def _run(self, ipr: AsyncIPRoute, device: str, index: int | None, op: Op) -> int | None:
        """One operation; returns the device's ifindex after it (it changes on create)."""
        if isinstance(op, CreateDevice):
            return await self._create(ipr, op)
        if index is None:
            raise NetlinkError(_ENODEV, f"{device} does not exist")
        if isinstance(op, DeleteDevice):
            await ipr.link("del", index=index)
            return None
        if isinstance(op, ConfigureDevice):
            extra: dict[str, Any] = {}
            if op.mac is not None:
                extra["address"] = op.mac
            if op.mtu is not None:
                extra["mtu"] = op.mtu
            await ipr.link("set", index=index, state="up", **extra)
        elif isinstance(op, AddAddress | DelAddress):
            command = "add" if isinstance(op, AddAddress) else "del"
            address, prefixlen = str(op.address.ip), op.address.network.prefixlen
            await ipr.addr(command, index=index, address=address, prefixlen=prefixlen)
        else:
            await self._entry(ipr, index, op)
        return index

    @staticmethod
    async def _create(ipr: AsyncIPRoute, op: CreateDevice) -> int:
        s = op.spec
        await ipr.link(
            "add",
            ifname=s.name,
            kind="vxlan",
            vxlan_id=s.vni,
            vxlan_local=str(s.local),
            vxlan_link=s.link,
            vxlan_port=s.port,
            vxlan_learning=0,
            address=s.mac,
            mtu=s.mtu,
        )
        index = await _index(ipr, s.name)
        if index is None:
            raise NetlinkError(_ENODEV, f"{s.name} vanished after its creation")
        # no IPv6 link-local address: it would only send router solicitations and MLD
        # reports into a device that has no destination for multicast
        await ipr.link(
            "set",
            index=index,
            IFLA_AF_SPEC={"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE",
                                                              _ADDR_GEN_MODE_NONE)]})]},
        )
        await ipr.addr("add", index=index, address=str(s.address), prefixlen=32)
        await ipr.link("set", index=index, state="up")
        return index

    @staticmethod
    async def _entry(ipr: AsyncIPRoute, index: int, op: Op) -> None:
        if isinstance(op, SetNeigh):
            await ipr.neigh(
                "replace", dst=str(op.address), lladdr=op.mac, ifindex=index, state=_NUD_PERMANENT
            )
        elif isinstance(op, DelNeigh):
            await ipr.neigh("del", dst=str(op.address), ifindex=index)
        elif isinstance(op, SetFdb):
            await ipr.fdb(
                "replace",
                ifindex=index,
                lladdr=op.mac,
                dst=str(op.dst),
                state=_NUD_PERMANENT | nd_states["noarp"],
                flags=nd_flags["self"],
            )
        elif isinstance(op, DelFdb):
            await ipr.fdb("del", ifindex=index, lladdr=op.mac, dst=str(op.dst))
        elif isinstance(op, SetRoute):
            await ipr.route(
                "replace", dst=str(op.dst), gateway=str(op.via), oif=index, flags=_RTNH_F_ONLINK
            )
        elif isinstance(op, DelRoute):
            extra = {} if op.gateway is None else {"gateway": str(op.gateway)}
            await ipr.route("del", dst=str(op.dst), oif=index, priority=op.priority, **extra)
        else:
            raise MeshError(f"overlay: unknown operation {op!r}")
