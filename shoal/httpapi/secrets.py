"""/secrets: list, create, inspect, update (Labels only), remove — and the handlers /configs
shares (see configs.py). A secret's `Data` is never part of a response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from shoal.api.codec import decode_body, to_builtins
from shoal.api.types import ConfigSpec, SecretSpec
from shoal.httpapi.common import (
    check_filter_keys,
    daemon_of,
    json_response,
    label_matches,
    parse_filters,
    query_int,
    route,
)
from shoal.httpapi.control import blob_ops, call
from shoal.manager.controlapi.resolve import resolve
from shoal.manager.controlapi.secrets import SECRETS, BlobKind

__all__ = ["add_blob_routes", "add_routes", "blob_json"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def blob_json(kind: BlobKind, obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = to_builtins(obj)
    if kind is SECRETS:
        data["Spec"].pop("Data", None)
    return data


def _matches(obj: Any, filters: dict[str, list[str]]) -> bool:
    checks: dict[str, Callable[[str], bool]] = {
        "id": lambda v: obj.id.startswith(v),
        "name": lambda v: obj.spec.name == v,
        "names": lambda v: obj.spec.name.startswith(v),
        "label": lambda v: label_matches(obj.spec.labels, v),
    }
    return all(any(checks[k](v) for v in values) for k, values in filters.items() if values)


def _handlers(kind: BlobKind, spec_type: type[SecretSpec] | type[ConfigSpec]) -> dict[str, Handler]:
    ops = blob_ops(kind)

    async def list_all(request: web.Request) -> web.StreamResponse:
        store = daemon_of(request).require_manager()
        filters = parse_filters(request)
        check_filter_keys(filters, {"id", "name", "names", "label"})
        found = [o for o in kind.table(store.view()).list() if _matches(o, filters)]
        found.sort(key=lambda o: o.spec.name)
        return json_response([blob_json(kind, o) for o in found])

    async def create(request: web.Request) -> web.StreamResponse:
        daemon_of(request).require_manager()
        spec = decode_body(await request.read(), spec_type)
        obj = await call(request, ops.create, spec)
        return json_response({"ID": obj.id}, status=201)

    async def inspect(request: web.Request) -> web.StreamResponse:
        store = daemon_of(request).require_manager()
        return json_response(
            blob_json(kind, resolve(kind.table(store.view()), request.match_info["id"]))
        )

    async def update(request: web.Request) -> web.StreamResponse:
        daemon_of(request).require_manager()
        spec = decode_body(await request.read(), spec_type)
        version = query_int(request, "version")
        await call(request, ops.update, request.match_info["id"], version, spec)
        return web.Response(status=200)

    async def remove(request: web.Request) -> web.StreamResponse:
        daemon_of(request).require_manager()
        await call(request, ops.remove, request.match_info["id"])
        return web.Response(status=204)

    return {
        "list": list_all,
        "create": create,
        "inspect": inspect,
        "update": update,
        "remove": remove,
    }


def add_blob_routes(
    router: web.UrlDispatcher, kind: BlobKind, spec_type: type[SecretSpec] | type[ConfigSpec]
) -> None:
    base = f"/{kind.kind}s"
    handlers = _handlers(kind, spec_type)
    route(router, "GET", base, handlers["list"])
    route(router, "POST", f"{base}/create", handlers["create"])
    route(router, "GET", base + "/{id}", handlers["inspect"])
    route(router, "POST", base + "/{id}/update", handlers["update"])
    route(router, "DELETE", base + "/{id}", handlers["remove"])


def add_routes(router: web.UrlDispatcher) -> None:
    add_blob_routes(router, SECRETS, SecretSpec)
