"""`GET /networks/ingress?verbose=true`: the routing mesh as this node sees it.

Docker's verbose fields, computed from this node's replica of the endpoint table (gossip),
so a worker answers as well as a manager:

    Services   {name: {VIP: "", Ports: ["Target: 80, Publish: 8080"], LocalLBIndex: 0,
                        Tasks: [{Name, EndpointID (task ID), EndpointIP (task address),
                                 Info: {"Host IP": node address}}]}}
    Peers      [{Name: hostname (or node ID), IP: node address}]   live gossip members

and a shoal extension, `ShoalMesh`: what this node's data plane was last given (the
`MeshState` `MeshSync` applied), port by port: its policy, where its traffic goes (the
backends, with their task, node and whether local) or that it is refused, and the health
ports with what they answer (`Listening` false: the port could not be bound, see the
daemon's log). `InSync` is false while the plane lags the endpoint table
(an apply is failing or in flight).

`snapshot(daemon)` reads the daemon; `verbose_fields(snapshot)` is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoal.agent.taskenv import task_name
from shoal.gossip.members import MemberStatus
from shoal.mesh.model import MeshState, PortSpec
from shoal.mesh.plan import plan_ports
from shoal.mesh.policy import health_targets

if TYPE_CHECKING:
    from shoal.httpapi.node_api import LocalNode

__all__ = ["MeshSnapshot", "snapshot", "verbose_fields"]


@dataclass(frozen=True)
class MeshSnapshot:
    node_id: str
    mode: str  # the data plane: "kernel" or "userspace"
    desired: MeshState | None  # from the ports and the endpoint table now
    applied: MeshState | None  # what the data plane took last
    peers: tuple[tuple[str, str], ...] = ()  # live gossip members: (node ID, gossip addr)
    node_addrs: dict[str, str] = field(default_factory=dict)  # node ID -> underlay address
    hostnames: dict[str, str] = field(default_factory=dict)  # node ID -> hostname (managers)
    task_names: dict[str, str] = field(default_factory=dict)  # task ID -> "web.1" (managers)
    listening: frozenset[int] = frozenset()  # health ports bound now


def snapshot(daemon: LocalNode) -> MeshSnapshot:
    """What this node knows of the mesh now (empty outside a swarm or before it starts)."""
    network = daemon.network
    if daemon.swarm is None or network is None:
        return MeshSnapshot("", daemon.opts.mesh, None, None)
    mesh = network.mesh
    try:
        members = network.gossip.members()
    except RuntimeError:  # gossip not running (stopping)
        members = []
    peers = tuple(sorted((m.node_id, m.addr) for m in members
                         if m.status in (MemberStatus.ALIVE, MemberStatus.SUSPECT)))
    view = network.net_view()
    addrs = {p.node_id: p.addr for p in view.peers} if view is not None else {}
    addrs.setdefault(network.node_id, network.addr)
    hostnames: dict[str, str] = {}
    names: dict[str, str] = {}
    if daemon.store is not None:
        store_view = daemon.store.view()
        hostnames = {n.id: n.description.hostname for n in store_view.nodes.list()
                     if n.description is not None and n.description.hostname}
        names = {t.id: task_name(t) for t in store_view.tasks.list()}
    return MeshSnapshot(
        network.node_id, daemon.opts.mesh,
        mesh.desired() if mesh is not None else None,
        mesh.applied if mesh is not None else None,
        peers, addrs, hostnames, names, frozenset(network.health.ports),
    )


def _host(addr: str) -> str:
    host, sep, _ = addr.rpartition(":")
    return host if sep else addr


def _services(snap: MeshSnapshot, state: MeshState) -> dict[str, Any]:
    names = {p.service_id: p.service_name or p.service_id for p in state.ports}
    ports: dict[str, list[str]] = {}
    for p in state.ports:
        if p.mode == "ingress":
            ports.setdefault(p.service_id, []).append(
                f"Target: {p.target}, Publish: {p.published}")
    out: dict[str, Any] = {}
    for sid in sorted(ports, key=lambda s: names[s]):
        tasks = [
            {
                "Name": f"{snap.task_names.get(e.task_id, names[sid])}.{e.task_id}",
                "EndpointID": e.task_id,
                "EndpointIP": e.address,
                "Info": {"Host IP": snap.node_addrs.get(e.node_id, "")},
            }
            for e in sorted(state.endpoints, key=lambda e: e.task_id) if e.service_id == sid
        ]
        out[names[sid]] = {"VIP": "", "Ports": ports[sid], "LocalLBIndex": 0, "Tasks": tasks}
    return out


def _peers(snap: MeshSnapshot) -> list[dict[str, str]]:
    return [
        {"Name": snap.hostnames.get(node_id, node_id),
         "IP": snap.node_addrs.get(node_id) or _host(addr)}
        for node_id, addr in snap.peers
    ]


def _mesh(snap: MeshSnapshot, state: MeshState | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Node": snap.node_id, "DataPlane": snap.mode,
        "InSync": state is not None and state == snap.desired, "Ports": [], "HealthPorts": [],
        "Problems": [],
    }
    if state is None:
        return out
    planned, problems = plan_ports(state)
    by_address = {(e.service_id, e.address): e for e in state.endpoints if e.ready}
    names = {p.service_id: p.service_name or p.service_id for p in state.ports}
    specs: dict[tuple[str, int, str], PortSpec] = {
        (p.protocol, p.published, p.service_id): p for p in state.ports
    }
    for port in planned:
        spec = specs[(port.protocol, port.published, port.service_id)]
        backends = []
        for addr in port.backends:
            ep = by_address.get((port.service_id, addr))
            backends.append({
                "Address": f"{addr}:{port.target}",
                "Task": ep.task_id if ep else "",
                "Node": ep.node_id if ep else "",
                "Local": bool(ep and ep.node_id == state.node_id),
            })
        out["Ports"].append({
            "Protocol": port.protocol, "PublishedPort": port.published,
            "TargetPort": port.target, "PublishMode": port.mode,
            "Service": names[port.service_id], "ServiceID": port.service_id,
            "TrafficPolicy": port.policy, "ProxyProtocol": spec.proxy_protocol,
            "State": "open" if port.backends else "refused", "Backends": backends,
        })
    targets, health_problems = health_targets(state)
    out["HealthPorts"] = [
        {"Port": t.port, "Service": t.service_name, "ServiceID": t.service_id,
         "Status": t.status, "LocalEndpoints": t.local_endpoints,
         "Listening": t.port in snap.listening}
        for _, t in sorted(targets.items())
    ]
    out["Problems"] = [*problems, *health_problems]
    return out


def verbose_fields(snap: MeshSnapshot) -> dict[str, Any]:
    """`Services`, `Peers` and `ShoalMesh` of the ingress network on this node."""
    state = snap.applied
    return {
        "Services": _services(snap, snap.desired) if snap.desired is not None else {},
        "Peers": _peers(snap),
        "ShoalMesh": _mesh(snap, state),
    }
