"""The dashboard's aggregate JSON: nodes, services, tasks and the mesh, as one document.

Read from the store on a manager; on a worker (no store) only the mesh part, from the
gossiped endpoint table. The page (dashboard.html) polls it every second.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["dashboard_state", "mesh"]

_LIVE = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")


def _nodes(view: Any, raft: Any) -> list[dict[str, Any]]:
    """The nodes; Leader and Reachability as Raft sees them from here (as `node ls`)."""
    status_of = getattr(raft, "manager_status", None)
    out = []
    for n in sorted(view.list("node"), key=lambda n: n.description.hostname):
        status = status_of(n) if status_of is not None else n.manager_status
        out.append({
            "id": n.id, "hostname": n.description.hostname, "role": n.spec.role,
            "leader": bool(status and status.leader),
            "reachability": status.reachability if status else "",
            "state": n.status.state, "availability": n.spec.availability,
            "addr": n.status.addr,
        })
    return out


def _ports(svc: Any) -> list[dict[str, Any]]:
    spec = svc.spec.endpoint_spec
    ports = svc.endpoint.ports or (spec.ports if spec is not None else None)
    return [{"protocol": p.protocol, "published": p.published_port, "target": p.target_port,
             "mode": p.publish_mode} for p in (ports or []) if p.published_port]


def _services(view: Any, tasks: list[Any]) -> list[dict[str, Any]]:
    running = Counter(t.service_id for t in tasks
                      if t.status.state == "running" and t.desired_state == "running")
    out = []
    for svc in sorted(view.list("service"), key=lambda s: s.spec.name):
        rep = svc.spec.mode.replicated
        out.append({
            "id": svc.id, "name": svc.spec.name, "mode": "replicated" if rep else "global",
            "desired": rep.replicas if rep else None, "running": running.get(svc.id, 0),
            "image": svc.spec.task_template.container_spec.image, "ports": _ports(svc),
            "update": svc.update_status.state if svc.update_status else "",
        })
    return out


def _tasks(tasks: list[Any], names: dict[str, str]) -> list[dict[str, Any]]:
    return [{
        "id": t.id, "service": names.get(t.service_id, t.service_name), "slot": t.slot,
        "node": t.node_id, "state": t.status.state, "desired": t.desired_state,
        "address": t.address,
    } for t in sorted(tasks, key=lambda t: (t.service_name, t.slot, t.id))
        if t.desired_state in _LIVE or t.status.state in _LIVE]


def _published(node: Any) -> dict[tuple[str, int], tuple[str, int]]:
    """(protocol, published) -> (service_id, target) of every ingress port: from the store
    on a manager; on a worker from what its mesh last applied (the ports the managers sent
    it), else from the gossiped entries' ports."""
    out: dict[tuple[str, int], tuple[str, int]] = {}
    if node.store is not None:
        for svc in node.store.view().list("service"):
            for p in _ports(svc):
                if p["mode"] in ("", "ingress"):
                    out[(p["protocol"] or "tcp", p["published"])] = (svc.id, p["target"])
        return out
    applied = getattr(getattr(getattr(node, "network", None), "mesh", None), "applied", None)
    if applied is not None:
        for port in applied.ports:
            if port.mode == "ingress":
                out[(port.protocol, port.published)] = (port.service_id, port.target)
        return out
    for e in node.endpoints.entries():
        for pp in e.ports:
            if pp.mode == "ingress":
                out[(pp.protocol, pp.published)] = (e.service_id, pp.target)
    return out


def mesh(node: Any) -> list[dict[str, Any]]:
    """Every published port and the tasks the mesh routes it to (the endpoint table)."""
    entries = node.endpoints.entries()
    ports = []
    for (proto, port), (service_id, target) in sorted(_published(node).items()):
        backends = [{"task": e.task_id, "node": e.node_id, "address": e.address,
                     "target": target, "ready": e.ready, "service": e.service_id}
                    for e in entries if e.service_id == service_id]
        ports.append({"protocol": proto, "published": port, "service": service_id,
                      "backends": sorted(backends, key=lambda b: (b["node"], b["task"]))})
    return ports


def dashboard_state(node: Any) -> dict[str, Any]:
    """What the page draws; `node` is the daemon, read duck-typed."""
    swarm = getattr(node, "swarm", None)
    state: dict[str, Any] = {
        "hostname": node.hostname, "node_id": swarm.node_id if swarm else "",
        "manager": node.store is not None, "index": getattr(node.store, "index", 0),
        "nodes": [], "services": [], "tasks": [],
        "mesh": mesh(node),
    }
    if node.store is not None:
        view = node.store.view()
        tasks = view.list("task")
        names = {s.id: s.spec.name for s in view.list("service")}
        state.update(nodes=_nodes(view, getattr(node, "raft", None)),
                     services=_services(view, tasks), tasks=_tasks(tasks, names))
    return state
