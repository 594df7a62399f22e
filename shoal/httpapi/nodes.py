"""/nodes: list, inspect, update, remove.

ManagerStatus (Leader, Reachability) is Raft's view, computed when asked. A follower
manager has only heard from the leader, so node reads on a follower are answered by the
leader (forwarded like writes), as docker shows the leader's view from every manager.
Updates and removals are the control API's (`manager/controlapi/nodes.py`): demoting or
force-removing a manager is refused when the remaining managers would have no quorum; the
leader's RaftMembers then removes its Raft member.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from aiohttp import web

from shoal.api.codec import decode_body
from shoal.api.types import Node, NodeSpec
from shoal.cluster.forward import FORWARDED_HEADER
from shoal.httpapi.common import (
    check_filter_keys,
    daemon_of,
    json_response,
    parse_filters,
    query_bool,
    query_int,
    route,
)
from shoal.httpapi.control import NODE_UPDATE, call
from shoal.httpapi.node_api import LocalNode
from shoal.manager.controlapi.nodes import remove_node, validate_node_spec
from shoal.manager.controlapi.resolve import resolve
from shoal.manager.raft.errors import NotLeader

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


def _leader_view(request: web.Request, daemon: LocalNode) -> None:
    """On a follower, have the leader answer (its Raft view is the cluster's)."""
    raft = daemon.raft
    if raft is not None and not raft.is_leader and not request.headers.get(FORWARDED_HEADER):
        raise NotLeader("node views come from the leader", raft.leader_id)


def _with_status(daemon: LocalNode, node: Node) -> Node:
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
    daemon_of(request).require_manager()
    spec = decode_body(await request.read(), NodeSpec)
    validate_node_spec(spec)
    # the leader's call: a demotion's quorum check is its Raft's
    await call(request, NODE_UPDATE, request.match_info["id"], query_int(request, "version"), spec)
    return web.Response(status=200)


async def remove(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    store = daemon.require_manager()
    _leader_view(request, daemon)
    self_id = daemon.swarm.node_id if daemon.swarm is not None else None
    force = query_bool(request, "force")
    await remove_node(store, daemon.raft, self_id, request.match_info["id"], force)
    return web.Response(status=200)


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/nodes", list_nodes)
    route(router, "GET", "/nodes/{id}", inspect_node)
    route(router, "POST", "/nodes/{id}/update", update)
    route(router, "DELETE", "/nodes/{id}", remove)
