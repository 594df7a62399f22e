"""/swarm: inspect, init, join, leave, update."""

from __future__ import annotations

import msgspec
from aiohttp import web

from shoal.api.codec import decode_body
from shoal.api.types import SwarmSpec
from shoal.errors import InvalidArgument, NotSupported, Unavailable
from shoal.httpapi.common import daemon_of, json_response, query_bool, query_int, route
from shoal.manager.controlapi.swarm import update_swarm

__all__ = ["add_routes"]


class JoinRequest(msgspec.Struct, rename="pascal", forbid_unknown_fields=True):
    listen_addr: str = "0.0.0.0:2377"
    advertise_addr: str = ""
    data_path_addr: str = ""
    remote_addrs: list[str] | None = None
    join_token: str = ""
    availability: str = ""


class InitRequest(msgspec.Struct, rename="pascal", forbid_unknown_fields=True):
    listen_addr: str = "0.0.0.0:2377"
    advertise_addr: str = ""
    data_path_addr: str = ""
    data_path_port: int = 0
    default_addr_pool: list[str] | None = None
    force_new_cluster: bool = False
    spec: SwarmSpec | None = None
    auto_lock_managers: bool = False
    availability: str = ""
    subnet_size: int = 0


async def inspect(request: web.Request) -> web.StreamResponse:
    store = daemon_of(request).require_manager()
    clusters = store.view().clusters.list()
    if not clusters:
        raise Unavailable("This node is not a swarm manager.")
    # the gossip keys stay inside the cluster, as swarm's network bootstrap keys do
    return json_response(
        msgspec.structs.replace(clusters[0], network_keys=None, removed_nodes=None)
    )


async def init(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    body = decode_body(await request.read(), InitRequest)
    if body.auto_lock_managers:
        raise NotSupported("shoal does not support autolock yet")
    if body.force_new_cluster and daemon.swarm is None:
        raise InvalidArgument("--force-new-cluster needs an existing swarm state on this node")
    node_id = await daemon.init_swarm(
        body.advertise_addr,
        body.default_addr_pool or [],
        body.subnet_size,
        body.data_path_port,
        body.spec,
        body.listen_addr,
        force_new_cluster=body.force_new_cluster,
    )
    return json_response(node_id)


async def join(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    body = decode_body(await request.read(), JoinRequest)
    if body.availability not in ("", "active", "pause", "drain"):
        raise InvalidArgument(f"invalid availability {body.availability!r}")
    await daemon.join(
        body.remote_addrs or [],
        body.join_token,
        body.advertise_addr,
        body.availability,
        listen_addr=body.listen_addr,
    )
    return web.Response(status=200)


async def leave(request: web.Request) -> web.StreamResponse:
    await daemon_of(request).leave(query_bool(request, "force"))
    return web.Response(status=200)


async def update(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    store = daemon.require_manager()
    spec = decode_body(await request.read(), SwarmSpec)
    if query_bool(request, "rotateManagerUnlockKey"):
        raise NotSupported("shoal does not support autolock (no unlock key to rotate)")
    await update_swarm(
        store,
        query_int(request, "version"),
        spec,
        rotate_worker=query_bool(request, "rotateWorkerToken"),
        rotate_manager=query_bool(request, "rotateManagerToken"),
        ca=daemon.root_ca,
    )
    return web.Response(status=200)


async def unlockkey(request: web.Request) -> web.StreamResponse:
    raise NotSupported("shoal does not support autolock (no unlock key)")


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/swarm", inspect)
    route(router, "POST", "/swarm/init", init)
    route(router, "POST", "/swarm/join", join)
    route(router, "POST", "/swarm/leave", leave)
    route(router, "POST", "/swarm/update", update)
    route(router, "GET", "/swarm/unlockkey", unlockkey)
