"""Make the node's kernel match a `NetPlan` (rtnetlink for links/routes, `nft -f -`).

Runs in the daemon's network namespace (a lab host's in tests). Task-side interfaces are
configured through a netlink socket opened inside the task's namespace by a short-lived
thread (see `shoal.agent.exec.netsetup`). Routes are tagged with protocol `RT_PROTO` so a
restarted daemon finds and replaces its own; `close()` removes every route, link, bridge
and the nftables table this module made.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from shoal import wakeups
from shoal.agent.exec.netns_call import in_netns_at
from shoal.agent.exec.netsetup import (
    create_veth,
    delete_link,
    ensure_bridge,
    forget_neighbour,
    set_sysctl,
)
from shoal.agent.svcnet.plan import TABLE, NetPlan, TaskLink, nft_script, plan, vip_flushes
from shoal.gossip.table import EndpointTable
from shoal.rtnl import (
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_TABLE,
    RTM_DELROUTE,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMSG,
    RTN_UNICAST,
    RTNH_F_ONLINK,
    RTPROT_STATIC,
    SOCK_TYPE,
    U32,
    NetlinkError,
    Rtnl,
    addr_msg,
    attr,
    link_msg,
    u32,
)

__all__ = ["RT_PROTO", "ServiceNetworks"]

log = logging.getLogger(__name__)
RT_PROTO = 0x53  # "shoal service networks" in the routes' protocol field
OVERLAY_DEVICE = "shoal.4096"


def _netlink_in(netns_path: str) -> int:
    """A NETLINK_ROUTE socket fd living in the namespace pinned at `netns_path`."""
    return in_netns_at(netns_path, _netlink_socket, "svcnet-netns")


def _netlink_socket() -> int:
    return socket.socket(socket.AF_NETLINK, SOCK_TYPE, 0).detach()


async def _add_link(link: TaskLink, netns_path: str) -> None:
    """veth `host_name` on the network's bridge, its peer `name` in the task namespace with
    the task's address as a /32 and the subnet routed via the gateway."""
    ns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        await create_veth(link.bridge, link.host_name, ns_fd, peer=link.name)
    finally:
        os.close(ns_fd)
    with Rtnl(_netlink_in(netns_path)) as inner:
        idx = inner.index(link.name)  # the socket's namespace: the task's
        if idx is None:
            raise NetlinkError(19, f"{link.name} missing in the task namespace")
        # RTNH_F_ONLINK: the gateway is not in a /32's subnet
        route = (
            RTMSG.pack(socket.AF_INET, link.subnet.prefixlen, 0, 0, RT_TABLE_MAIN,
                       RTPROT_STATIC, 0, RTN_UNICAST, RTNH_F_ONLINK)
            + attr(RTA_DST, link.subnet.network_address.packed)
            + attr(RTA_GATEWAY, link.gateway.packed)
            + attr(RTA_OIF, U32.pack(idx))
        )
        # in order, in one datagram; the first failure is raised
        await inner.request(
            (RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, addr_msg(idx, link.address, 32)),
            (RTM_NEWLINK, 0, link_msg(idx, up=True)),
            (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, route),
        )


class ServiceNetworks:
    """Follows the endpoint table and the peers' slices; applies each new plan."""

    def __init__(
        self,
        node_id: str,
        endpoints: EndpointTable,
        slices: Callable[[], Mapping[str, str]],
        netns_path: Callable[[str], Path],
        nft: str = "nft",
        conntrack: str = "conntrack",
    ) -> None:
        self.node_id = node_id
        self.endpoints = endpoints
        self.slices = slices
        self.netns_path = netns_path
        self.nft = nft
        self.conntrack = conntrack
        self.applied = NetPlan()
        self._links: set[TaskLink] = set()
        self._nft_text = ""
        self._lock = asyncio.Lock()  # the loop and a task's start hook both apply
        self._routes_placed = False  # did the last pass install its routes (overlay up)?

    async def run(self, every: float = 1.0, repair_every: float = 30.0) -> None:
        """Apply on every table change, and every `every` s for new peers and namespaces
        (a pass whose plan is already in place costs no netlink call); every
        `repair_every` s a full pass re-reads the routes and repairs what changed behind
        our back. Cancelling leaves the kernel state for the next start (tasks outlive a
        daemon restart); `close()` removes it."""
        loop = asyncio.get_running_loop()
        next_repair = loop.time()
        while True:
            seen = self.endpoints.version
            repair = loop.time() >= next_repair
            if repair:
                next_repair = loop.time() + repair_every
            try:
                await self.apply(repair=repair)
            except Exception:
                log.exception("service networks: apply failed")
            await _change_or_poll(self.endpoints.wait_change(seen), every)

    async def apply(self, *, repair: bool = False) -> None:
        """Bring the kernel to the current plan. Without `repair`, a plan that is already
        in place (same plan, every task link made, routes installed) is left alone."""
        async with self._lock:
            await self._apply(repair)

    def _in_place(self, wanted: NetPlan) -> bool:
        return (wanted == self.applied and self._routes_placed
                and self._links.issuperset(wanted.links))

    async def _apply(self, repair: bool) -> None:
        wanted = plan(self.node_id, self.endpoints.entries(), self.slices())
        if not repair and self._in_place(wanted):
            return
        await self._bridges(wanted)
        await self._task_links(wanted)
        await self._routes(wanted)
        await self._drop_bridges(wanted)
        text = nft_script(wanted)
        if text != self._nft_text:
            await self._run_nft(text)
            self._nft_text = text
            for args in vip_flushes(self.applied, wanted):
                await self._run_conntrack(args)
        self.applied = wanted

    async def _bridges(self, wanted: NetPlan) -> None:
        old = {b.name for b in self.applied.bridges}
        for bridge in wanted.bridges:
            if bridge.name not in old:
                await ensure_bridge(bridge.name, bridge.gateway)
                set_sysctl(f"net.ipv4.conf.{bridge.name}.send_redirects", "0")

    async def _drop_bridges(self, wanted: NetPlan) -> None:
        keep = {b.name for b in wanted.bridges}
        for bridge in self.applied.bridges:
            if bridge.name not in keep:
                await delete_link(bridge.name)

    async def _task_links(self, wanted: NetPlan) -> None:
        want = set(wanted.links)
        for link in sorted(self._links - want):
            await delete_link(link.host_name)
            self._links.discard(link)
        for link in sorted(want - self._links):
            path = self.netns_path(link.task_id)
            if not path.exists():
                continue  # not started yet, or gone: the next pass sees it
            if await _exists(link.host_name):  # made by this daemon's previous life
                self._links.add(link)
                continue
            try:
                await _add_link(link, str(path))
                # the address may be an earlier task's (freed addresses are reused): drop
                # the bridge's cached MAC, or new flows go to a dead MAC for seconds
                await forget_neighbour(link.bridge, link.address)
            except (OSError, NetlinkError) as exc:
                log.warning("service networks: task %s on %s: %s", link.task_id,
                            link.network_id, exc)
                await delete_link(link.host_name)
                continue
            self._links.add(link)

    async def _routes(self, wanted: NetPlan) -> None:
        """The per-task /32 routes to other nodes."""
        want = dict(wanted.routes)
        self._routes_placed = False
        with Rtnl() as nl:
            device = nl.index(OVERLAY_DEVICE)
            held = await _our_routes(nl)
            for dst in held.keys() - want.keys():
                body = RTMSG.pack(socket.AF_INET, 32, 0, 0, RT_TABLE_MAIN, RT_PROTO, 0, 0, 0)
                with contextlib.suppress(NetlinkError):
                    await nl.request((RTM_DELROUTE, 0, body + attr(RTA_DST, dst.packed)))
            if device is None:
                self._routes_placed = not want  # else: no overlay yet, the next pass tries
                return
            for dst, via in want.items():
                if held.get(dst) != str(via):
                    body = (
                        RTMSG.pack(socket.AF_INET, 32, 0, 0, RT_TABLE_MAIN, RT_PROTO, 0,
                                   RTN_UNICAST, RTNH_F_ONLINK)
                        + attr(RTA_DST, dst.packed)
                        + attr(RTA_GATEWAY, via.packed)
                        + attr(RTA_OIF, U32.pack(device))
                    )
                    await nl.request((RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body))
        self._routes_placed = True

    async def _run_nft(self, script: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            self.nft, "-f", "-", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate(script.encode())
        if proc.returncode != 0:
            raise OSError(f"nft failed: {err.decode().strip()}")

    async def _run_conntrack(self, args: tuple[str, ...]) -> None:
        """Best effort, as the mesh's: exit 1 (nothing matched) is the common case."""
        if not self.conntrack:
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                self.conntrack, *args, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("service networks: cannot run %s (stale flows stay): %s",
                        self.conntrack, exc)
            self.conntrack = ""
            return
        _, err = await proc.communicate()
        if proc.returncode not in (0, 1):
            log.warning("service networks: conntrack %s: %s", " ".join(args),
                        err.decode(errors="replace").strip())

    async def close(self) -> None:
        for link in sorted(self._links):
            with contextlib.suppress(Exception):
                await delete_link(link.host_name)
        self._links.clear()
        with contextlib.suppress(Exception):
            await self._routes(NetPlan())
        for bridge in self.applied.bridges:
            with contextlib.suppress(Exception):
                await delete_link(bridge.name)
        if self._nft_text:
            with contextlib.suppress(Exception):
                await self._run_nft(f"table ip {TABLE}\ndelete table ip {TABLE}\n")
        self._nft_text = ""
        self.applied = NetPlan()
        self._routes_placed = False


async def _exists(name: str) -> bool:
    with Rtnl() as nl:
        return nl.index(name) is not None


async def _our_routes(nl: Rtnl) -> dict[ipaddress.IPv4Address, str]:
    """dst -> gateway of the main table's /32 routes tagged RT_PROTO."""
    held: dict[ipaddress.IPv4Address, str] = {}
    body = RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0)
    for (_, dst_len, _, _, table, proto, _, _, _), attrs in await nl.dump(
        RTM_GETROUTE, body, RTMSG
    ):
        dst, gateway = attrs.get(RTA_DST), attrs.get(RTA_GATEWAY)
        if (u32(attrs.get(RTA_TABLE)) or table) != RT_TABLE_MAIN:
            continue
        if proto == RT_PROTO and dst_len == 32 and dst:
            held[ipaddress.IPv4Address(dst)] = (
                str(ipaddress.IPv4Address(gateway)) if gateway else "None"
            )
    return held


async def _change_or_poll(change: Coroutine[Any, Any, object], every: float) -> None:
    """Until `change` or at most `every` s have passed (from half of it: the poll wakes
    with a ticker's wake-up, `sleep_riding`, instead of one of its own; never later than
    the plain timeout was, so what the pass picks up is not slower)."""
    changed = asyncio.ensure_future(change)
    poll = asyncio.ensure_future(
        wakeups.sleep_riding(0.5 * every, max(0.0, 0.5 * every - wakeups.GRID))
    )
    try:
        await asyncio.wait((changed, poll), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (changed, poll):
            fut.cancel()
        await asyncio.gather(changed, poll, return_exceptions=True)
