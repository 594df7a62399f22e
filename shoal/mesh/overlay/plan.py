"""PURE planner of the overlay: (device spec, wanted remotes, what the kernel holds) -> ops.

`plan` compares what the node should hold with a `KernelView` (read from the kernel, or
the outcome of the previous apply) and returns the netlink operations that bridge the gap,
nothing more: an unchanged remote gets no operation at all, so its traffic never notices
an apply. `simulate` is a strict model of what those operations do to the kernel (the
executor's contract, and the way `Overlay` knows the new state without reading it back).

Ordering (why): every removal comes before any addition; a route is removed before the
neighbour and fdb entries it leads to, and added after them, so the route is the commit
point of a remote and the kernel never resolves a next hop it cannot reach (it would ARP
over VXLAN, where nobody answers). A remote whose underlay moved gets one fdb `replace`,
atomic in the kernel. Identity changes of the device (VNI, port, local address, underlay
link, learning) re-create it, which drops its entries; settings (MAC, MTU, address,
up) are changed in place.

No I/O; values only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from shoal.mesh.overlay.model import DeviceSpec, Remote

__all__ = [
    "AddAddress",
    "ConfigureDevice",
    "CreateDevice",
    "DelAddress",
    "DelFdb",
    "DelNeigh",
    "DelRoute",
    "DeleteDevice",
    "DeviceView",
    "KernelView",
    "Op",
    "PlanError",
    "RouteKey",
    "SetFdb",
    "SetNeigh",
    "SetRoute",
    "op_keys",
    "plan",
    "simulate",
    "wanted_view",
]

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network
# a main-table route on the device: (destination, priority); ours all have priority 0
RouteKey = tuple[IPv4Network, int]


class PlanError(Exception):
    """An operation the kernel would refuse (the planner's bug, or a view that lies)."""


@dataclass(frozen=True)
class DeviceView:
    """The device as the kernel holds it."""

    kind: str
    vni: int
    port: int
    local: IPv4Address | None
    link: int
    learning: bool
    mac: str
    mtu: int
    addresses: frozenset[ipaddress.IPv4Interface]
    up: bool


@dataclass(frozen=True)
class KernelView:
    """The device and its entries. `neighbours` maps to None for a non-permanent entry."""

    device: DeviceView | None = None
    routes: Mapping[RouteKey, IPv4Address | None] = field(default_factory=dict)
    neighbours: Mapping[IPv4Address, str | None] = field(default_factory=dict)
    fdb: Mapping[str, frozenset[IPv4Address]] = field(default_factory=dict)


# ------------------------------------------------------------------------------ operations


@dataclass(frozen=True)
class CreateDevice:
    """Create the device with its MAC and MTU, add its /32 address, set it up."""

    spec: DeviceSpec

    def __str__(self) -> str:
        s = self.spec
        return (
            f"link add {s.name} type vxlan id {s.vni} local {s.local} dev #{s.link} "
            f"dstport {s.port} nolearning address {s.mac} mtu {s.mtu}; "
            f"addr add {s.address}/32; up"
        )


@dataclass(frozen=True)
class DeleteDevice:
    name: str

    def __str__(self) -> str:
        return f"link del {self.name}"


@dataclass(frozen=True)
class ConfigureDevice:
    """Set what differs among MAC, MTU and up (None: leave it)."""

    name: str
    mac: str | None
    mtu: int | None

    def __str__(self) -> str:
        parts = [f"address {self.mac}"] * (self.mac is not None)
        parts += [f"mtu {self.mtu}"] * (self.mtu is not None)
        return f"link set {self.name} {' '.join([*parts, 'up'])}"


@dataclass(frozen=True)
class AddAddress:
    address: ipaddress.IPv4Interface

    def __str__(self) -> str:
        return f"addr add {self.address}"


@dataclass(frozen=True)
class DelAddress:
    address: ipaddress.IPv4Interface

    def __str__(self) -> str:
        return f"addr del {self.address}"


@dataclass(frozen=True)
class SetNeigh:
    address: IPv4Address
    mac: str

    def __str__(self) -> str:
        return f"neigh replace {self.address} lladdr {self.mac} nud permanent"


@dataclass(frozen=True)
class DelNeigh:
    address: IPv4Address

    def __str__(self) -> str:
        return f"neigh del {self.address}"


@dataclass(frozen=True)
class SetFdb:
    mac: str
    dst: IPv4Address

    def __str__(self) -> str:
        return f"fdb replace {self.mac} dst {self.dst}"


@dataclass(frozen=True)
class DelFdb:
    mac: str
    dst: IPv4Address

    def __str__(self) -> str:
        return f"fdb del {self.mac} dst {self.dst}"


@dataclass(frozen=True)
class SetRoute:
    dst: IPv4Network
    via: IPv4Address

    def __str__(self) -> str:
        return f"route replace {self.dst} via {self.via} onlink"


@dataclass(frozen=True)
class DelRoute:
    dst: IPv4Network
    priority: int
    gateway: IPv4Address | None

    def __str__(self) -> str:
        via = f" via {self.gateway}" if self.gateway is not None else ""
        return f"route del {self.dst}{via} metric {self.priority}"


Op = (
    CreateDevice
    | DeleteDevice
    | ConfigureDevice
    | AddAddress
    | DelAddress
    | SetNeigh
    | DelNeigh
    | SetFdb
    | DelFdb
    | SetRoute
    | DelRoute
)

# ---------------------------------------------------------------------------------- planning


def _device_of(spec: DeviceSpec) -> DeviceView:
    return DeviceView(
        kind="vxlan",
        vni=spec.vni,
        port=spec.port,
        local=spec.local,
        link=spec.link,
        learning=False,
        mac=spec.mac,
        mtu=spec.mtu,
        addresses=frozenset({ipaddress.IPv4Interface(f"{spec.address}/32")}),
        up=True,
    )


def wanted_view(spec: DeviceSpec, remotes: Mapping[IPv4Network, Remote]) -> KernelView:
    """What the kernel holds once a plan for (`spec`, `remotes`) has been carried out."""
    ordered = sorted(remotes.values())
    return KernelView(
        device=_device_of(spec),
        routes={(r.subnet, 0): r.via for r in ordered},
        neighbours={r.via: r.mac for r in ordered},
        fdb={r.mac: frozenset({r.underlay}) for r in ordered},
    )


def _same_identity(spec: DeviceSpec, dev: DeviceView) -> bool:
    return (dev.kind, dev.vni, dev.port, dev.local, dev.link, dev.learning) == (
        "vxlan", spec.vni, spec.port, spec.local, spec.link, False,
    )


def _device_ops(spec: DeviceSpec, dev: DeviceView) -> list[Op]:
    ops: list[Op] = []
    mac = spec.mac if dev.mac != spec.mac else None
    mtu = spec.mtu if dev.mtu != spec.mtu else None
    if mac is not None or mtu is not None or not dev.up:
        ops.append(ConfigureDevice(spec.name, mac, mtu))
    want = ipaddress.IPv4Interface(f"{spec.address}/32")
    ops += [DelAddress(a) for a in sorted(dev.addresses - {want})]
    if want not in dev.addresses:
        ops.append(AddAddress(want))
    return ops


def _entry_ops(want: KernelView, held: KernelView) -> list[Op]:
    removals: list[Op] = [
        DelRoute(dst, prio, gw)
        for (dst, prio), gw in sorted(held.routes.items(), key=_route_order)
        if (dst, prio) not in want.routes
    ]
    removals += [DelNeigh(a) for a in sorted(held.neighbours) if a not in want.neighbours]
    kept: dict[str, frozenset[IPv4Address]] = {}
    for mac, dsts in sorted(held.fdb.items()):
        wanted = want.fdb.get(mac, frozenset())
        # at most one destination may stay: `SetFdb` (a kernel replace) rewrites only one
        kept[mac] = (wanted & dsts or frozenset(sorted(dsts)[:1])) if wanted else frozenset()
        removals += [DelFdb(mac, dst) for dst in sorted(dsts - kept[mac])]
    additions: list[Op] = [
        SetNeigh(a, mac)
        for a, mac in want.neighbours.items()
        if mac is not None and held.neighbours.get(a) != mac
    ]
    additions += [
        SetFdb(mac, dst)
        for mac, dsts in want.fdb.items()
        for dst in dsts
        if kept.get(mac) != dsts
    ]
    additions += [
        SetRoute(dst, via)
        for (dst, _), via in want.routes.items()
        if via is not None and held.routes.get((dst, 0)) != via
    ]
    return removals + additions


def _route_order(item: tuple[RouteKey, IPv4Address | None]) -> tuple[int, int, int]:
    (dst, prio), _ = item
    return (int(dst.network_address), dst.prefixlen, prio)


def plan(spec: DeviceSpec, remotes: Mapping[IPv4Network, Remote], held: KernelView) -> list[Op]:
    """The operations that turn `held` into `wanted_view(spec, remotes)`; [] when equal."""
    want = wanted_view(spec, remotes)
    if held.device is None:
        return [CreateDevice(spec), *_entry_ops(want, KernelView(device=want.device))]
    if not _same_identity(spec, held.device):
        return [
            DeleteDevice(spec.name),
            CreateDevice(spec),
            *_entry_ops(want, KernelView(device=want.device)),
        ]
    return [*_device_ops(spec, held.device), *_entry_ops(want, held)]


# -------------------------------------------------------------------------------- the model


def simulate(held: KernelView, ops: Iterable[Op]) -> KernelView:
    """What the kernel holds after `ops`, or PlanError where it would refuse one."""
    view = held
    for op in ops:
        view = _step(view, op)
    return view


def _step(view: KernelView, op: Op) -> KernelView:
    if isinstance(op, CreateDevice):
        if view.device is not None:
            raise PlanError(f"{op}: the device exists")
        return KernelView(device=_device_of(op.spec))
    dev = view.device
    if dev is None:
        raise PlanError(f"{op}: no device")
    if isinstance(op, DeleteDevice):
        return KernelView()
    if isinstance(op, ConfigureDevice):
        mac = dev.mac if op.mac is None else op.mac
        mtu = dev.mtu if op.mtu is None else op.mtu
        return replace(view, device=replace(dev, mac=mac, mtu=mtu, up=True))
    if isinstance(op, AddAddress | DelAddress):
        return replace(view, device=_address_step(dev, op))
    return _entry_step(view, op)


def _address_step(dev: DeviceView, op: AddAddress | DelAddress) -> DeviceView:
    present = op.address in dev.addresses
    if isinstance(op, AddAddress):
        if present:
            raise PlanError(f"{op}: exists")
        return replace(dev, addresses=dev.addresses | {op.address})
    if not present:
        raise PlanError(f"{op}: absent")
    return replace(dev, addresses=dev.addresses - {op.address})


def _entry_step(view: KernelView, op: Op) -> KernelView:
    routes, neigh, fdb = dict(view.routes), dict(view.neighbours), dict(view.fdb)
    if isinstance(op, SetRoute):
        routes[(op.dst, 0)] = op.via
    elif isinstance(op, DelRoute):
        if routes.get((op.dst, op.priority), "absent") != op.gateway:
            raise PlanError(f"{op}: no such route")
        del routes[(op.dst, op.priority)]
    elif isinstance(op, SetNeigh):
        neigh[op.address] = op.mac
    elif isinstance(op, DelNeigh):
        if op.address not in neigh:
            raise PlanError(f"{op}: no such neighbour")
        del neigh[op.address]
    elif isinstance(op, SetFdb):
        fdb[op.mac] = _fdb_replace(op, fdb.get(op.mac, frozenset()))
    elif isinstance(op, DelFdb):
        dsts = fdb.get(op.mac, frozenset())
        if op.dst not in dsts:
            raise PlanError(f"{op}: no such fdb entry")
        if dsts == {op.dst}:
            del fdb[op.mac]
        else:
            fdb[op.mac] = dsts - {op.dst}
    else:
        raise PlanError(f"unknown operation {op!r}")
    return replace(view, routes=routes, neighbours=neigh, fdb=fdb)


def _fdb_replace(op: SetFdb, dsts: frozenset[IPv4Address]) -> frozenset[IPv4Address]:
    # the kernel's replace rewrites the entry's *first* destination: only well defined
    # (and only ever planned) for an entry with at most one
    if op.dst in dsts:
        return dsts
    if len(dsts) > 1:
        raise PlanError(f"{op}: entry has several destinations {sorted(dsts)}")
    return frozenset({op.dst})


def op_keys(op: Op) -> Sequence[object]:
    """The kernel objects an entry operation touches (for tests of the ordering rules)."""
    if isinstance(op, SetRoute | DelRoute):
        return [("route", op.dst)]
    if isinstance(op, SetNeigh | DelNeigh):
        return [("neigh", op.address)]
    if isinstance(op, SetFdb | DelFdb):
        return [("fdb", op.mac)]
    return [("device",)]
