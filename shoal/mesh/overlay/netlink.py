"""The overlay's executor: reads and programs the VXLAN device over rtnetlink (`shoal.rtnl`).

Acts on the *current* network namespace (the daemon runs inside a lab host's) and refuses
the initial one unless SHOAL_ALLOW_ROOT_NETNS=1, before sending a single netlink message.
Each operation is one netlink request, sent in the order `plan` gives (the ordering carries
the overlay's atomicity, see `plan.py`); a failure stops the batch and is raised as
`MeshError` naming the operation, after which the caller must re-read the kernel. The
requests are the bytes pyroute2 sent for them (its import cost every daemon 8-10 MiB;
docs/design/exec-runtime.md, "Session 11").
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Sequence

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
from shoal.rtnl import (
    BE16,
    IFINFOMSG,
    IFLA_ADDRESS,
    IFLA_AF_SPEC,
    IFLA_IFNAME,
    IFLA_INET6_ADDR_GEN_MODE,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_MTU,
    IFLA_VXLAN_ID,
    IFLA_VXLAN_LEARNING,
    IFLA_VXLAN_LINK,
    IFLA_VXLAN_LOCAL,
    IFLA_VXLAN_PORT,
    NDA_DST,
    NDA_LLADDR,
    NDMSG,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTMSG,
    RTN_UNICAST,
    RTNH_F_ONLINK,
    RTPROT_STATIC,
    U32,
    NetlinkError,
    Rtnl,
    addr_msg,
    attr,
    ifname,
    ipv4_addresses,
    link_msg,
    mac_bytes,
    mac_text,
    parse_attrs,
    text,
    u32,
)

__all__ = ["NetlinkKernel", "check_netns"]

_IFF_UP = 1
_ENODEV = 19
_ADDR_GEN_MODE_NONE = 1
_AF_BRIDGE = 7


def check_netns(in_root: Callable[[], bool] = in_root_netns) -> None:
    """Refuse the initial network namespace (the real host) unless explicitly allowed."""
    if os.environ.get("SHOAL_ALLOW_ROOT_NETNS") == "1":
        return
    if in_root():
        raise MeshError(
            "overlay: refusing to program a VXLAN device in the initial network namespace "
            "(run the node in its own namespace, or set SHOAL_ALLOW_ROOT_NETNS=1)"
        )


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
            with Rtnl() as nl:
                for index, held in await ipv4_addresses(nl):
                    if held.ip == address:
                        _, link = await nl.get(RTM_GETLINK, link_msg(index), IFINFOMSG)
                        return index, int(u32(link.get(IFLA_MTU)) or 0)
        except NetlinkError as exc:
            raise MeshError(f"overlay: reading the underlay link failed: {exc}") from exc
        raise MeshError(f"overlay: no interface of this node holds the underlay address {address}")

    async def read(self, device: str) -> KernelView:
        """The device and its routes, neighbours and fdb entries as the kernel holds them."""
        check_netns(self._in_root)
        try:
            with Rtnl() as nl:
                index = nl.index(device)
                if index is None:
                    return KernelView()
                return KernelView(
                    device=await self._device(nl, index),
                    routes=await self._routes(nl, index),
                    neighbours=await self._neighbours(nl, index),
                    fdb=await self._fdb(nl, index),
                )
        except NetlinkError as exc:
            raise MeshError(f"overlay: reading {device} failed: {exc}") from exc

    async def execute(self, device: str, ops: Sequence[Op]) -> None:
        """Carry out `ops` in order; MeshError naming the first one that fails."""
        check_netns(self._in_root)
        if not ops:
            return
        with Rtnl() as nl:
            index = nl.index(device)
            for op in ops:
                try:
                    index = await self._run(nl, device, index, op)
                except NetlinkError as exc:
                    raise MeshError(f"overlay: `{op}` failed: {exc}") from exc

    async def remove(self, device: str) -> bool:
        """Delete the device (its routes, neighbours and fdb entries go with it)."""
        check_netns(self._in_root)
        try:
            with Rtnl() as nl:
                index = nl.index(device)
                if index is None:
                    return False
                await nl.request((RTM_DELLINK, 0, link_msg(index)))
                return True
        except NetlinkError as exc:
            if exc.code == _ENODEV:
                return False
            raise MeshError(f"overlay: deleting {device} failed: {exc}") from exc

    # -- reading ---------------------------------------------------------------------
    @staticmethod
    async def _device(nl: Rtnl, index: int) -> DeviceView:
        (_, _, _, flags, _), link = await nl.get(RTM_GETLINK, link_msg(index), IFINFOMSG)
        info = parse_attrs(link.get(IFLA_LINKINFO, b""))
        kind = text(info.get(IFLA_INFO_KIND)) or ""
        # the attribute numbers of IFLA_INFO_DATA are the kind's own
        data = parse_attrs(info.get(IFLA_INFO_DATA, b"")) if kind == "vxlan" else {}
        local, port = data.get(IFLA_VXLAN_LOCAL), data.get(IFLA_VXLAN_PORT)
        learning, mac = data.get(IFLA_VXLAN_LEARNING), link.get(IFLA_ADDRESS)
        return DeviceView(
            kind=kind,
            vni=u32(data.get(IFLA_VXLAN_ID)) or 0,
            port=int(BE16.unpack(port[:2])[0]) if port else 0,
            local=ipaddress.IPv4Address(local) if local else None,
            link=u32(data.get(IFLA_VXLAN_LINK)) or 0,
            learning=bool(learning and learning[0]),
            mac=mac_text(mac) if mac is not None else "None",
            mtu=int(u32(link.get(IFLA_MTU)) or 0),
            addresses=frozenset(a for i, a in await ipv4_addresses(nl) if i == index),
            up=bool(flags & _IFF_UP),
        )

    @staticmethod
    async def _routes(nl: Rtnl, index: int) -> dict[RouteKey, ipaddress.IPv4Address | None]:
        routes: dict[RouteKey, ipaddress.IPv4Address | None] = {}
        body = RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0)
        for (_, dst_len, _, _, table, _, _, kind, _), m in await nl.dump(
            RTM_GETROUTE, body, RTMSG
        ):
            table = u32(m.get(RTA_TABLE)) or table
            if u32(m.get(RTA_OIF)) != index or table != RT_TABLE_MAIN or kind != RTN_UNICAST:
                continue
            raw_dst, gateway = m.get(RTA_DST), m.get(RTA_GATEWAY)
            dst = ipaddress.IPv4Address(raw_dst) if raw_dst else "0.0.0.0"
            routes[(ipaddress.IPv4Network(f"{dst}/{dst_len}"), u32(m.get(RTA_PRIORITY)) or 0)] = (
                ipaddress.IPv4Address(gateway) if gateway else None
            )
        return routes

    @staticmethod
    async def _neighbours(nl: Rtnl, index: int) -> dict[ipaddress.IPv4Address, str | None]:
        found: dict[ipaddress.IPv4Address, str | None] = {}
        body = NDMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        for (_, ifindex, state, _, _), m in await nl.dump(RTM_GETNEIGH, body, NDMSG):
            dst, mac = m.get(NDA_DST), m.get(NDA_LLADDR)
            if ifindex != index or not dst:
                continue
            permanent = state & NUD_PERMANENT
            found[ipaddress.IPv4Address(dst)] = mac_text(mac) if permanent and mac else None
        return found

    @staticmethod
    async def _fdb(nl: Rtnl, index: int) -> dict[str, frozenset[ipaddress.IPv4Address]]:
        found: dict[str, set[ipaddress.IPv4Address]] = {}
        body = NDMSG.pack(_AF_BRIDGE, 0, 0, 0, 0)
        for (_, ifindex, _, _, _), m in await nl.dump(RTM_GETNEIGH, body, NDMSG):
            dst, mac = m.get(NDA_DST), m.get(NDA_LLADDR)
            if ifindex != index or not dst or len(dst) != 4 or not mac:
                continue
            found.setdefault(mac_text(mac), set()).add(ipaddress.IPv4Address(dst))
        return {mac: frozenset(dsts) for mac, dsts in found.items()}

    # -- writing ---------------------------------------------------------------------
    async def _run(self, nl: Rtnl, device: str, index: int | None, op: Op) -> int | None:
        """One operation; returns the device's ifindex after it (it changes on create)."""
        if isinstance(op, CreateDevice):
            return await self._create(nl, op)
        if index is None:
            raise NetlinkError(_ENODEV, f"{device} does not exist")
        if isinstance(op, DeleteDevice):
            await nl.request((RTM_DELLINK, 0, link_msg(index)))
            return None
        if isinstance(op, ConfigureDevice):
            body = link_msg(index, up=True)
            if op.mac is not None:
                body += attr(IFLA_ADDRESS, mac_bytes(op.mac))
            if op.mtu is not None:
                body += attr(IFLA_MTU, U32.pack(op.mtu))
            await nl.request((RTM_NEWLINK, 0, body))
        elif isinstance(op, AddAddress | DelAddress):
            body = addr_msg(index, op.address.ip, op.address.network.prefixlen)
            if isinstance(op, AddAddress):
                await nl.request((RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body))
            else:
                await nl.request((RTM_DELADDR, 0, body))
        else:
            await self._entry(nl, index, op)
        return index

    @staticmethod
    async def _create(nl: Rtnl, op: CreateDevice) -> int:
        s = op.spec
        data = (
            attr(IFLA_VXLAN_ID, U32.pack(s.vni))
            + attr(IFLA_VXLAN_LOCAL, s.local.packed)
            + attr(IFLA_VXLAN_LINK, U32.pack(s.link))
            + attr(IFLA_VXLAN_PORT, BE16.pack(s.port))
            + attr(IFLA_VXLAN_LEARNING, b"\0")
        )
        body = (
            link_msg()
            + attr(IFLA_IFNAME, ifname(s.name))
            + attr(IFLA_ADDRESS, mac_bytes(s.mac))
            + attr(IFLA_MTU, U32.pack(s.mtu))
            + attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"vxlan\0") + attr(IFLA_INFO_DATA, data))
        )
        await nl.request((RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body))
        index = nl.index(s.name)
        if index is None:
            raise NetlinkError(_ENODEV, f"{s.name} vanished after its creation")
        # no IPv6 link-local address: it would only send router solicitations and MLD
        # reports into a device that has no destination for multicast
        gen_mode = attr(IFLA_INET6_ADDR_GEN_MODE, bytes([_ADDR_GEN_MODE_NONE]))
        af_spec = attr(IFLA_AF_SPEC, attr(socket.AF_INET6, gen_mode))
        await nl.request((RTM_NEWLINK, 0, link_msg(index) + af_spec))
        await nl.request((RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, addr_msg(index, s.address, 32)))
        await nl.request((RTM_NEWLINK, 0, link_msg(index, up=True)))
        return index

    @staticmethod
    async def _entry(nl: Rtnl, index: int, op: Op) -> None:
        replace = NLM_F_CREATE | NLM_F_REPLACE
        fdb = NDMSG.pack(_AF_BRIDGE, index, NUD_PERMANENT | NUD_NOARP, NTF_SELF, 0)
        if isinstance(op, SetNeigh):
            body = (
                NDMSG.pack(socket.AF_INET, index, NUD_PERMANENT, 0, 0)
                + attr(NDA_DST, op.address.packed)
                + attr(NDA_LLADDR, mac_bytes(op.mac))
            )
            await nl.request((RTM_NEWNEIGH, replace, body))
        elif isinstance(op, DelNeigh):
            body = NDMSG.pack(socket.AF_INET, index, NUD_PERMANENT, 0, 0) + attr(
                NDA_DST, op.address.packed
            )
            await nl.request((RTM_DELNEIGH, 0, body))
        elif isinstance(op, SetFdb | DelFdb):
            body = fdb + attr(NDA_LLADDR, mac_bytes(op.mac)) + attr(NDA_DST, op.dst.packed)
            await nl.request((RTM_NEWNEIGH, replace, body) if isinstance(op, SetFdb)
                             else (RTM_DELNEIGH, 0, body))
        elif isinstance(op, SetRoute):
            body = (
                RTMSG.pack(socket.AF_INET, op.dst.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC,
                           0, RTN_UNICAST, RTNH_F_ONLINK)
                + attr(RTA_DST, op.dst.network_address.packed)
                + attr(RTA_GATEWAY, op.via.packed)
                + attr(RTA_OIF, U32.pack(index))
            )
            await nl.request((RTM_NEWROUTE, replace, body))
        elif isinstance(op, DelRoute):
            body = (
                RTMSG.pack(socket.AF_INET, op.dst.prefixlen, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0)
                + attr(RTA_DST, op.dst.network_address.packed)
                + attr(RTA_OIF, U32.pack(index))
                + attr(RTA_PRIORITY, U32.pack(op.priority))
            )
            if op.gateway is not None:
                body += attr(RTA_GATEWAY, op.gateway.packed)
            await nl.request((RTM_DELROUTE, 0, body))
        else:
            raise MeshError(f"overlay: unknown operation {op!r}")
