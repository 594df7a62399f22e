"""The aiohttp application: version prefixes, error mapping, Docker's response headers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from shoal import __version__
from shoal.errors import ShoalError
from shoal.httpapi import (
    configs,
    containers,
    control,
    doctor,
    events,
    exec,
    images,
    networks,
    nodes,
    openapi,
    secrets,
    services,
    swarm,
    system,
    tasks,
    volumes,
)
from shoal.httpapi.common import API_VERSION, DAEMON_KEY, MIN_API_VERSION, json_response
from shoal.httpapi.forwarding import consistent_reads, forward_middleware, replay_on
from shoal.node.node import Node
from shoal.observe.server import api_latency_middleware

__all__ = ["ROUTE_MODULES", "add_all_routes", "make_app"]

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _version_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def _error(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except ShoalError as exc:
        response = _error(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status == 404:
            response = _error(
                404, f"shoal does not support this endpoint: {request.method} {request.path}"
            )
        elif exc.status == 405:
            response = _error(405, f"method {request.method} not allowed on {request.path}")
        else:
            response = _error(exc.status, exc.reason)
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        response = _error(500, f"internal error in shoal while serving {request.path}")
    if not response.prepared:
        response.headers["Api-Version"] = API_VERSION
        response.headers["Ostype"] = "linux"
        response.headers["Server"] = f"shoal/{__version__} (linux)"
        response.headers["Docker-Experimental"] = "false"
    return response


@web.middleware
async def _versions(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = request.match_info.get("api_version")
    if version is None:
        return await handler(request)
    if _version_tuple(version) < _version_tuple(MIN_API_VERSION):
        return _error(
            400,
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version",
        )
    if _version_tuple(version) > _version_tuple(API_VERSION):
        return _error(
            400,
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}",
        )
    return await handler(request)


# every module that serves routes (scripts/gen_openapi.py reads the routes from here)
ROUTE_MODULES = (
    system, swarm, nodes, services, tasks, networks, secrets, configs,
    images, containers, exec, volumes, doctor, events, openapi,
)


def add_all_routes(router: web.UrlDispatcher) -> None:
    for module in ROUTE_MODULES:
        module.add_routes(router)


def _build_app(daemon: Node) -> web.Application:
    app = web.Application(
        middlewares=[api_latency_middleware(daemon), _errors, _versions, forward_middleware,
                     consistent_reads],
        client_max_size=16 * 1024 * 1024,
    )
    app[DAEMON_KEY] = daemon
    exec.prepare_app(app)
    add_all_routes(app.router)
    return app


def make_app(daemon: Node) -> web.Application:
    """The API app; while it runs, requests forwarded to this node replay on its twin."""
    app = _build_app(daemon)

    async def replayer(_: web.Application) -> AsyncIterator[None]:
        replay = replay_on(lambda: _build_app(daemon), control.runner(daemon), daemon.root)
        await replay.start()
        daemon.api_executor = replay.run
        try:
            yield
        finally:
            daemon.api_executor = None
            await replay.stop()

    app.cleanup_ctx.append(replayer)
    return app
