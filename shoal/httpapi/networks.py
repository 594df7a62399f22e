"""/networks: list, create, inspect, remove — swarm-scoped overlay networks only.

Networks render as Docker's NetworkResource (`Id`, not `ID`; `Created`; `Scope: swarm`).
A node outside a swarm has no network to list (shoal has no local networks); everything
else about networks needs a manager, as in Docker, except inspecting `ingress`, which
every swarm node has (a worker derives it from the cluster ID in its certificate).
`?verbose=true` adds Docker's `Services` and `Peers` (ingress: the routing mesh as this
node sees it, plus shoal's `ShoalMesh`; see network_verbose.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from shoal.api.codec import decode_body, to_builtins
from shoal.api.types import IPAM, Network, NetworkSpec, Swarm
from shoal.errors import InvalidArgument, NotFound
from shoal.httpapi.common import (
    check_filter_keys,
    daemon_of,
    json_response,
    label_matches,
    parse_filters,
    query_bool,
    route,
)
from shoal.httpapi.control import NETWORK_CREATE, NETWORK_REMOVE, call
from shoal.httpapi.network_services import network_containers, network_services
from shoal.httpapi.network_verbose import snapshot, verbose_fields
from shoal.httpapi.node_api import LocalNode
from shoal.manager.controlapi.networks import (
    INGRESS,
    all_networks,
    ingress_network,
    network_users,
    resolve_network,
)
from shoal.manager.state.store import ReadView

__all__ = ["add_routes", "network_json"]

GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Docker shows for a time it does not know


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


def _matches(
    view: ReadView | None, network: Network, filters: dict[str, list[str]]
) -> bool:
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


def _dangling(view: ReadView | None, network: Network, value: str) -> bool:
    if value.lower() not in ("true", "1", "false", "0"):
        raise InvalidArgument(f'invalid filter \'dangling={value}\': use "true" or "false"')
    unused = not network.spec.ingress and view is not None and not network_users(view, network.id)
    return unused == (value.lower() in ("true", "1"))


async def list_networks(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request)
    check_filter_keys(filters, {"id", "name", "driver", "scope", "type", "label", "dangling"})
    for value in filters.get("type", []):
        if value not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{value}'")
    daemon = daemon_of(request)
    store = daemon.store
    if store is None:  # a worker has ingress (the mesh); no swarm: no network at all
        ingress = _local_ingress(daemon)
        found = [n for n in [ingress] if n is not None and _matches(None, n, filters)]
        return json_response([network_json(n) for n in found])
    view = store.view()
    found = [n for n in all_networks(view) if _matches(view, n, filters)]
    return json_response([network_json(n) for n in sorted(found, key=lambda n: n.spec.name)])


def _local_ingress(daemon: LocalNode) -> Network | None:
    """A worker's `ingress` (it has no store): the ID managers derive from the cluster ID,
    read from its certificate; no pools and Go's zero time for `Created` (unknown here)."""
    if daemon.swarm is None or daemon.tls is None:
        return None
    cluster = Swarm(id=daemon.tls.identity.cluster_id, created_at=GO_ZERO_TIME)
    return ingress_network(cluster)


def _worker_ingress(daemon: LocalNode, ref: str) -> Network:
    """`ingress` on a worker, by name, ID or a unique ID prefix."""
    network = _local_ingress(daemon)
    if network is not None and (
        ref in (INGRESS, network.id) or (ref and network.id.startswith(ref))
    ):
        return network
    raise NotFound(f"network {ref} not found")


async def inspect(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    scope = request.query.get("scope", "")
    verbose = query_bool(request, "verbose")
    daemon = daemon_of(request)
    if daemon.swarm is None or scope not in ("", "swarm"):
        raise NotFound(f"network {ref} not found")
    store = daemon.store
    network = (resolve_network(store.view(), ref) if store is not None
               else _worker_ingress(daemon, ref))
    body = network_json(network)
    if not network.spec.ingress and daemon.network is not None:
        body["Containers"] = network_containers(
            daemon.network.endpoints.entries(), daemon.network.node_id, network.id
        )
    if verbose:
        if network.spec.ingress:
            body.update(verbose_fields(snapshot(daemon)))
        else:
            services = network_services(store.view(), network) if store is not None else {}
            body.update({"Services": services,
                         "Peers": verbose_fields(snapshot(daemon))["Peers"]})
    return json_response(body)


async def create(request: web.Request) -> web.StreamResponse:
    daemon_of(request).require_manager()
    spec = decode_body(await request.read(), NetworkSpec)
    network = await call(request, NETWORK_CREATE, spec)
    return json_response({"Id": network.id, "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.StreamResponse:
    daemon_of(request).require_manager()
    await call(request, NETWORK_REMOVE, request.match_info["id"])
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/networks", list_networks)
    route(router, "POST", "/networks/create", create)
    route(router, "GET", "/networks/{id}", inspect)
    route(router, "DELETE", "/networks/{id}", remove)
