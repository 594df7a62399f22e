"""/networks: list, create, inspect, remove — swarm-scoped overlay networks only.

Networks render as Docker's NetworkResource (`Id`, not `ID`; `Created`; `Scope: swarm`).
A node outside a swarm has no network to list (shoal has no local networks); everything
else about networks needs a manager, as in Docker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from shoal.api.codec import decode_body, to_builtins
from shoal.api.types import IPAM, Network, NetworkSpec
from shoal.errors import InvalidArgument, NotFound
from shoal.httpapi.common import (
    check_filter_keys,
    daemon_of,
    json_response,
    label_matches,
    parse_filters,
    route,
)
from shoal.manager.controlapi.networks import (
    all_networks,
    create_network,
    network_users,
    remove_network,
    resolve_network,
)
from shoal.manager.state.store import ReadView

__all__ = ["add_routes", "network_json"]


def network_json(network: Network) -> dict[str, Any]:
    spec = network.spec
    ipam = spec.ipam or IPAM()
    return {
        "Name": spec.name,
        "Id": network.id,
        "Created": network.created_at,
        "Scope": "swarm",
        "Driver": spec.driver,
        "EnableIPv4": True,
        "EnableIPv6": False,
        "IPAM": {
            "Driver": ipam.driver or "default",
            "Options": ipam.options,
            "Config": to_builtins(ipam.config or []),
        },
        "Internal": spec.internal,
        "Attachable": spec.attachable,
        "Ingress": spec.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": spec.options or {},
        "Labels": spec.labels or {},
    }


def _matches(view: ReadView, network: Network, filters: dict[str, list[str]]) -> bool:
    spec = network.spec
    checks: dict[str, Callable[[str], bool]] = {
        "id": lambda v: network.id.startswith(v),
        "name": lambda v: v in spec.name,
        "driver": lambda v: spec.driver == v,
        "scope": lambda v: v == "swarm",
        "type": lambda v: v == ("builtin" if spec.ingress else "custom"),
        "label": lambda v: label_matches(spec.labels, v),
        "dangling": lambda v: _dangling(view, network, v),
    }
    return all(any(checks[k](v) for v in values) for k, values in filters.items() if values)


def _dangling(view: ReadView, network: Network, value: str) -> bool:
    if value.lower() not in ("true", "1", "false", "0"):
        raise InvalidArgument(f'invalid filter \'dangling={value}\': use "true" or "false"')
    unused = not network.spec.ingress and not network_users(view, network.id)
    return unused == (value.lower() in ("true", "1"))


async def list_networks(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request)
    check_filter_keys(filters, {"id", "name", "driver", "scope", "type", "label", "dangling"})
    for value in filters.get("type", []):
        if value not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{value}'")
    store = daemon_of(request).store
    if store is None:
        return json_response([])  # no swarm: shoal has no local networks
    view = store.view()
    found = [n for n in all_networks(view) if _matches(view, n, filters)]
    return json_response([network_json(n) for n in sorted(found, key=lambda n: n.spec.name)])


async def inspect(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    scope = request.query.get("scope", "")
    store = daemon_of(request).store
    if store is None or scope not in ("", "swarm"):
        raise NotFound(f"network {ref} not found")
    return json_response(network_json(resolve_network(store.view(), ref)))


async def create(request: web.Request) -> web.StreamResponse:
    store = daemon_of(request).require_manager()
    spec = decode_body(await request.read(), NetworkSpec)
    network = await create_network(store, spec)
    return json_response({"Id": network.id, "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.StreamResponse:
    store = daemon_of(request).require_manager()
    await remove_network(store, request.match_info["id"])
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/networks", list_networks)
    route(router, "POST", "/networks/create", create)
    route(router, "GET", "/networks/{id}", inspect)
    route(router, "DELETE", "/networks/{id}", remove)
