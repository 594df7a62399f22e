"""/nodes: list, inspect, update, remove.

ManagerStatus (Leader, Reachability) is Raft's view, computed when asked. A follower
manager has only heard from the leader, so node reads on a follower are answered by the
leader (forwarded like writes), as docker shows the leader's view from every manager.
Demoting or force-removing a manager is refused when the remaining managers would have no
quorum; the leader's RaftMembers then removes its Raft member.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from aiohttp import web

from shoal.api.codec import decode_body
from shoal.api.types import Node, NodeSpec
from shoal.cluster.forward import FORWARDED_HEADER
from shoal.errors import InvalidArgument, ShoalError
from shoal.httpapi.common import (
    check_filter_keys,
    daemon_of,
    json_response,
    parse_filters,
    query_bool,
    query_int,
    route,
)
from shoal.manager.controlapi.resolve import resolve
from shoal.manager.controlapi.swarm import update_node
from shoal.manager.raft.errors import NotLeader
from shoal.manager.raft.ids import raft_id
from shoal.manager.state.store import Tx
from shoal.node.daemon import Daemon

__all__ = ["add_routes"]


def _matches(node: Node, filters: dict[str, list[str]]) -> bool:
    checks: dict[str, Callable[[str], bool]] = {
        "id": lambda v: node.id.startswith(v),
        "name": lambda v: v in (node.spec.name, node.description.hostname),
        "role": lambda v: node.spec.role == v,
        "membership": lambda v: v == "accepted",
        "availability": lambda v: node.spec.availability == v,
        "label": lambda v: _label_match(node.spec.labels or {}, v),
        "node.label": lambda v: _label_match(node.spec.labels or {}, v),
    }
    return all(any(checks[k](v) for v in values) for k, values in filters.items() if values)


def _label_match(labels: dict[str, str], expr: str) -> bool:
    key, sep, value = expr.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _leader_view(request: web.Request, daemon: Daemon) -> None:
    """On a follower, have the leader answer (its Raft view is the cluster's)."""
    raft = daemon.raft
    if raft is not None and not raft.is_leader and not request.headers.get(FORWARDED_HEADER):
        raise NotLeader("node views come from the leader", raft.node.leader_id)


def _with_status(daemon: Daemon, node: Node) -> Node:
    if daemon.raft is None or node.manager_status is None:
        return node
    return msgspec.structs.replace(node, manager_status=daemon.raft.manager_status(node))


async def list_nodes(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    store = daemon.require_manager()
    _leader_view(request, daemon)
    filters = parse_filters(request)
    check_filter_keys(
        filters, {"id", "name", "role", "membership", "availability", "label", "node.label"}
    )
    nodes = [_with_status(daemon, n) for n in store.view().nodes.list() if _matches(n, filters)]
    return json_response(sorted(nodes, key=lambda n: n.description.hostname))


async def inspect_node(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    store = daemon.require_manager()
    ref = request.match_info["id"]
    if ref == "self" and daemon.swarm is not None:
        ref = daemon.swarm.node_id
    _leader_view(request, daemon)
    return json_response(_with_status(daemon, resolve(store.view().nodes, ref)))


async def update(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    store = daemon.require_manager()
    spec = decode_body(await request.read(), NodeSpec)
    if spec.role not in ("", "worker", "manager"):
        raise InvalidArgument(f"invalid role {spec.role!r}")
    _leader_view(request, daemon)
    raft = daemon.raft
    await update_node(
        store,
        request.match_info["id"],
        query_int(request, "version"),
        spec,
        check_demote=raft.check_removal if raft is not None else None,
    )
    return web.Response(status=200)


async def remove(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    store = daemon.require_manager()
    _leader_view(request, daemon)
    node = resolve(store.view().nodes, request.match_info["id"])
    force = query_bool(request, "force")
    if node.spec.role == "manager":
        await _remove_manager(daemon, node, force)
    if not force and node.status.state != "down":
        raise InvalidArgument(
            f"rpc error: code = FailedPrecondition desc = node {node.id} is not down and "
            "can't be removed"
        )
    def drop(tx: Tx) -> None:
        tx.nodes.delete(node.id)
        for cluster in tx.clusters.list():
            cluster.removed_nodes = sorted({*(cluster.removed_nodes or ()), node.id})
            tx.clusters.update(cluster)

    await store.update(drop)
    if daemon.raft is not None and raft_id(node.id) in daemon.raft.members:
        try:  # at once if possible; RaftMembers completes it otherwise
            await daemon.raft.node.remove(raft_id(node.id))
        except ShoalError:
            pass
    return web.Response(status=200)


async def _remove_manager(daemon: Daemon, node: Node, force: bool) -> None:
    raft = daemon.raft
    is_self = daemon.swarm is not None and node.id == daemon.swarm.node_id
    if not force or raft is None or (is_self and len(raft.members) <= 1):
        raise InvalidArgument(
            "rpc error: code = FailedPrecondition desc = node "
            f"{node.id} is a cluster manager and is a member of the raft cluster. It must be "
            "demoted to worker before removal"
        )
    raft.check_removal(node.id)
    if is_self:  # the leader removing itself: hand over, then the new leader does it
        new = await raft.node.transfer_leadership()
        raise NotLeader("leadership handed over before removing this manager", new)


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/nodes", list_nodes)
    route(router, "GET", "/nodes/{id}", inspect_node)
    route(router, "POST", "/nodes/{id}/update", update)
    route(router, "DELETE", "/nodes/{id}", remove)
