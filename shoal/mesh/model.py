"""What the routing mesh of one node should do: published ports and the endpoints behind them.

A `MeshState` is a complete, self-contained description: a data plane given the same state
twice does the same thing twice. It says nothing about *how* (nftables, a proxy); that is
the data plane's business. Values only, no I/O; `to_dict`/`from_dict` give a JSON-able form
(used by the lab driver, `shoal.mesh.driver`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

__all__ = [
    "Endpoint",
    "MeshDelta",
    "MeshState",
    "PortSpec",
    "ServiceGroups",
    "changed_services",
    "service_groups",
]


@dataclass(frozen=True)
class PortSpec:
    """One published port of a service (`--publish published=P,target=T,mode=M,protocol=X`)."""

    service_id: str
    protocol: Literal["tcp", "udp"]
    published: int
    target: int
    mode: Literal["ingress", "host"]
    # send a PROXY protocol v2 header to the task first (userspace data plane only; the
    # kernel one cannot add bytes to a flow and ignores it)
    proxy_protocol: bool = False
    # the service's traffic policy (`shoal.mesh.policy`): "cluster" balances over every
    # node's ready tasks, "local" over this node's only (no SNAT; none here: refused)
    policy: Literal["cluster", "local"] = "cluster"
    health_port: int = 0  # served by every node for a "local" service (0: none)
    service_name: str = ""  # for people (inspect, health answers); planning ignores it


@dataclass(frozen=True)
class Endpoint:
    """One task of a service as the endpoint table knows it. Only `ready` ones get traffic."""

    service_id: str
    task_id: str
    node_id: str
    address: str  # IPv4 of the task
    ready: bool


@dataclass(frozen=True)
class MeshState:
    node_id: str  # this node
    local_subnet: str  # this node's task subnet (bridge side), e.g. "198.19.1.0/24"
    ports: tuple[PortSpec, ...]
    endpoints: tuple[Endpoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeshState:
        ports = tuple(PortSpec(**cast(dict[str, Any], p)) for p in data.get("ports", ()))
        endpoints = tuple(Endpoint(**cast(dict[str, Any], e)) for e in data.get("endpoints", ()))
        return cls(str(data["node_id"]), str(data["local_subnet"]), ports, endpoints)


ServiceGroups = dict[str, tuple[tuple[PortSpec, ...], tuple[Endpoint, ...]]]


def service_groups(state: MeshState) -> ServiceGroups:
    """Each service's ports and endpoints in `state`, both in `state`'s order."""
    ports: dict[str, list[PortSpec]] = {}
    endpoints: dict[str, list[Endpoint]] = {}
    for p in state.ports:
        ports.setdefault(p.service_id, []).append(p)
    for e in state.endpoints:
        endpoints.setdefault(e.service_id, []).append(e)
    return {sid: (tuple(ports.get(sid, ())), tuple(endpoints.get(sid, ())))
            for sid in ports.keys() | endpoints.keys()}


def changed_services(old: ServiceGroups, new: ServiceGroups) -> frozenset[str]:
    """The services whose ports or endpoints differ between two `service_groups`."""
    return frozenset(sid for sid in old.keys() | new.keys() if old.get(sid) != new.get(sid))


@dataclass(frozen=True)
class MeshDelta:
    """What changed from `base` (the state the data plane last applied successfully) to the
    state handed with this delta: the ids of the services whose ports or endpoints differ.
    Node id and subnet are not covered: a data plane given a state whose node or subnet
    differ from `base`'s, or a `base` that is not what it applied last, plans it whole."""

    base: MeshState
    services: frozenset[str]
