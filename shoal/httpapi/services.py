"""/services: list, create, inspect, update, remove, logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from shoal.api.codec import decode_body, to_builtins
from shoal.api.types import Service, ServiceSpec
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
from shoal.httpapi.control import SERVICE_CREATE, SERVICE_REMOVE, SERVICE_UPDATE, call
from shoal.httpapi.logs import stream_logs
from shoal.manager.controlapi.resolve import resolve
from shoal.manager.orchestrator.tasks import is_current
from shoal.manager.state.store import ReadView

__all__ = ["add_routes", "service_json"]


def service_json(service: Service, view: ReadView | None) -> dict[str, Any]:
    data: dict[str, Any] = to_builtins(service)
    data.pop("SpecVersion", None)
    data.pop("PreviousSpecVersion", None)
    data.pop("RegistryAuth", None)  # credentials go to the nodes, never back to clients
    if view is not None:
        tasks = view.tasks.find(lambda t: t.service_id == service.id)
        nodes = {n.id: n for n in view.nodes.list()}
        running = sum(
            1
            for t in tasks
            if t.status.state == "running"
            and is_current(t)
            and (n := nodes.get(t.node_id)) is not None
            and n.status.state != "down"
        )
        mode = service.spec.mode
        if mode is not None and mode.global_ is not None:
            desired = sum(1 for t in tasks if is_current(t))
        else:
            desired = (mode.replicated.replicas or 0) if mode and mode.replicated else 0
        data["ServiceStatus"] = {
            "RunningTasks": running,
            "DesiredTasks": desired,
            "CompletedTasks": 0,
        }
    return data


def _matches(service: Service, filters: dict[str, list[str]]) -> bool:
    mode = "global" if service.spec.mode and service.spec.mode.global_ is not None else "replicated"
    labels = service.spec.labels or {}

    def label(expr: str) -> bool:
        key, sep, value = expr.partition("=")
        return key in labels and (not sep or labels[key] == value)

    checks: dict[str, Callable[[str], bool]] = {
        "id": lambda v: service.id.startswith(v),
        "name": lambda v: service.spec.name.startswith(v),
        "mode": lambda v: mode == v,
        "label": label,
    }
    return all(any(checks[k](v) for v in values) for k, values in filters.items() if values)


async def list_services(request: web.Request) -> web.StreamResponse:
    store = daemon_of(request).require_manager()
    filters = parse_filters(request)
    check_filter_keys(filters, {"id", "name", "mode", "label"})
    view = store.view()
    status = query_bool(request, "status")
    found = sorted(
        (s for s in view.services.list() if _matches(s, filters)), key=lambda s: s.spec.name
    )
    return json_response([service_json(s, view if status else None) for s in found])


async def create(request: web.Request) -> web.StreamResponse:
    daemon_of(request).require_manager()
    spec = decode_body(await request.read(), ServiceSpec)
    auth = request.headers.get("X-Registry-Auth", "")
    service = await call(request, SERVICE_CREATE, spec, auth)
    return json_response({"ID": service.id, "Warnings": None}, status=201)


async def inspect(request: web.Request) -> web.StreamResponse:
    store = daemon_of(request).require_manager()
    service = resolve(store.view().services, request.match_info["id"])
    return json_response(service_json(service, None))


async def update(request: web.Request) -> web.StreamResponse:
    daemon_of(request).require_manager()
    spec = decode_body(await request.read(), ServiceSpec)
    rollback = request.query.get("rollback", "")
    if rollback not in ("", "previous"):
        raise InvalidArgument(f"invalid rollback value {rollback!r}: only 'previous'")
    await call(
        request,
        SERVICE_UPDATE,
        request.match_info["id"],
        query_int(request, "version"),
        spec,
        rollback == "previous",
        request.headers.get("X-Registry-Auth", ""),
    )
    return json_response({"Warnings": None})


async def remove(request: web.Request) -> web.StreamResponse:
    daemon_of(request).require_manager()
    await call(request, SERVICE_REMOVE, request.match_info["id"])
    return web.Response(status=200)


async def logs(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    store = daemon.require_manager()
    service = resolve(store.view().services, request.match_info["id"])
    return await stream_logs(request, daemon, service_id=service.id)


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/services", list_services)
    route(router, "POST", "/services/create", create)
    route(router, "GET", "/services/{id}", inspect)
    route(router, "POST", "/services/{id}/update", update)
    route(router, "DELETE", "/services/{id}", remove)
    route(router, "GET", "/services/{id}/logs", logs)
