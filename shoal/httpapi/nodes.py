"""/nodes: list, inspect, update, remove."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from shoal.api.codec import decode_body
from shoal.api.types import Node, NodeSpec
from shoal.errors import InvalidArgument
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


async def list_nodes(request: web.Request) -> web.StreamResponse:
    store = daemon_of(request).require_manager()
    filters = parse_filters(request)
    check_filter_keys(
        filters, {"id", "name", "role", "membership", "availability", "label", "node.label"}
    )
    nodes = [n for n in store.view().list("node") if _matches(n, filters)]
    return json_response(sorted(nodes, key=lambda n: n.description.hostname))


async def inspect_node(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    store = daemon.require_manager()
    ref = request.match_info["id"]
    if ref == "self" and daemon.swarm is not None:
        ref = daemon.swarm.node_id
    return json_response(resolve(store.view(), "node", ref))


async def update(request: web.Request) -> web.StreamResponse:
    store = daemon_of(request).require_manager()
    spec = decode_body(await request.read(), NodeSpec)
    if spec.role not in ("", "worker", "manager"):
        raise InvalidArgument(f"invalid role {spec.role!r}")
    await update_node(store, request.match_info["id"], query_int(request, "version"), spec)
    return web.Response(status=200)


async def remove(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    store = daemon.require_manager()
    node = resolve(store.view(), "node", request.match_info["id"])
    if daemon.swarm is not None and node.id == daemon.swarm.node_id:
        raise InvalidArgument(
            "rpc error: code = FailedPrecondition desc = node "
            f"{node.id} is a cluster manager and is a member of the raft cluster. It must be "
            "demoted to worker before removal"
        )
    if not query_bool(request, "force") and node.status.state != "down":
        raise InvalidArgument(
            f"rpc error: code = FailedPrecondition desc = node {node.id} is not down and "
            "can't be removed"
        )
    await store.update(lambda tx: tx.delete("node", node.id))
    return web.Response(status=200)


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/nodes", list_nodes)
    route(router, "GET", "/nodes/{id}", inspect_node)
    route(router, "POST", "/nodes/{id}/update", update)
    route(router, "DELETE", "/nodes/{id}", remove)
