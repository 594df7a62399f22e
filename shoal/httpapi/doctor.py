"""GET /shoal/doctor: this node probes the others on every cluster port (shoal/doctor).

`node=` (an ID, ID prefix or hostname) restricts it to one node (`shoal node check`);
`timeout=` is the deadline of each probe in seconds (default 2, at most 30).
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from shoal.doctor.run import DoctorInputs, DoctorPeer, run_doctor, vxlan_mtu
from shoal.errors import InvalidArgument, NotFound, Unavailable
from shoal.httpapi.common import daemon_of, json_response, route
from shoal.httpapi.node_api import LocalNode

__all__ = ["add_routes", "doctor_inputs"]


def _from_store(daemon: LocalNode) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """Hostnames by node ID, 2377 addresses by underlay address and the IDs of the nodes
    marked down (managers only)."""
    if daemon.store is None:
        return {}, {}, set()
    nodes = daemon.store.view().nodes.list()
    managers = {n.status.addr: n.manager_status.addr for n in nodes
                if n.manager_status is not None and n.manager_status.addr}
    down = {n.id for n in nodes if n.status.state == "down"}
    return {n.id: n.description.hostname for n in nodes}, managers, down


def doctor_inputs(daemon: LocalNode) -> DoctorInputs:
    """What the doctor needs from the running daemon (the one place that knows its shape)."""
    swarm, network = daemon.swarm, daemon.network
    if swarm is None or network is None:
        raise Unavailable("This node is not part of a swarm: nothing to probe")
    names, managers, down = _from_store(daemon)
    names.setdefault(swarm.node_id, daemon.hostname)
    managers.update({m.rpartition(":")[0]: m for m in swarm.managers})
    if daemon.cluster is not None:  # its own listener: where it listens, if not everywhere
        host = swarm.listen_addr.rpartition(":")[0]
        host = swarm.addr if host in ("", "0.0.0.0") else host
        managers[swarm.addr] = f"{host}:{daemon.cluster.port}"
    view = network.net_view()
    peers = [
        DoctorPeer(p.node_id, names.get(p.node_id, p.node_id[:12]), p.addr, p.subnet,
                   p.gossip, managers.get(p.addr, ""), down=p.node_id in down)
        for p in (view.peers if view is not None else ()) if p.node_id != swarm.node_id
    ]
    me = DoctorPeer(swarm.node_id, names[swarm.node_id], swarm.addr, swarm.subnet,
                    network.gossip_addr, managers.get(swarm.addr, ""), is_self=True)
    tls = daemon.tls
    return DoctorInputs(
        swarm.node_id, names[swarm.node_id], swarm.addr, [me, *peers], network.gossip,
        None if tls is None else (tls.ca_pem, tls.cert_pem, tls.key_pem), vxlan_mtu(),
    )


def _only(inputs: DoctorInputs, ref: str) -> DoctorInputs:
    exact = [p for p in inputs.peers if ref in (p.node_id, p.hostname)]
    matches = exact or [p for p in inputs.peers if p.node_id.startswith(ref)]
    if not matches:
        raise NotFound(f"node {ref} not found")
    if len(matches) > 1:
        raise InvalidArgument(f"node {ref} is ambiguous ({len(matches)} matches)")
    return DoctorInputs(inputs.node_id, inputs.hostname, inputs.addr, matches,
                        inputs.gossip, inputs.tls, inputs.overlay_mtu)


async def doctor(request: web.Request) -> web.StreamResponse:
    raw = request.query.get("timeout", "2")
    try:
        timeout = float(raw)
    except ValueError:
        raise InvalidArgument(f"invalid timeout {raw!r}: a number of seconds") from None
    if not 0 < timeout <= 30:
        raise InvalidArgument(f"invalid timeout {raw!r}: between 0 and 30 seconds")
    inputs = doctor_inputs(daemon_of(request))
    if ref := request.query.get("node"):
        inputs = _only(inputs, ref)
    report = await run_doctor(inputs, timeout)
    return json_response(msgspec.to_builtins(report))


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/shoal/doctor", doctor)
