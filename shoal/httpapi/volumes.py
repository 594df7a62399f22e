"""Docker's volume endpoints for a node's local named volumes (`docker volume ...`)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from aiohttp import web

from shoal.agent.volumes import LocalVolume, VolumeStore
from shoal.api.timefmt import from_epoch
from shoal.errors import InvalidArgument
from shoal.httpapi.common import (
    check_filter_keys,
    daemon_of,
    json_response,
    label_matches,
    parse_filters,
    route,
)
from shoal.httpapi.taskcontainers import containers_of

__all__ = ["VOLUMES_KEY", "add_routes"]

VOLUMES_KEY = web.AppKey("volumes", VolumeStore)


def _store(request: web.Request) -> VolumeStore:
    found = request.app.get(VOLUMES_KEY)
    return found if found is not None else VolumeStore(daemon_of(request).root / "volumes")


def _users(request: web.Request, name: str) -> list[str]:
    return [
        view.id
        for view in containers_of(request).containers()
        if any(m.get("Type") == "volume" and m.get("Name") == name for m in view.mounts)
    ]


def _shape(volume: LocalVolume) -> dict[str, Any]:
    return {
        "CreatedAt": volume.created_at,
        "Driver": "local",
        "Labels": volume.labels,
        "Mountpoint": str(volume.mountpoint),
        "Name": volume.name,
        "Options": volume.options,
        "Scope": "local",
    }


def _selected(request: web.Request, volume: LocalVolume, filters: dict[str, list[str]]) -> bool:
    names = filters.get("name", [])
    if names and not any(n in volume.name for n in names):
        return False
    if not all(label_matches(volume.labels, e) for e in filters.get("label", [])):
        return False
    if any(d != "local" for d in filters.get("driver", [])):
        return False
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
        if (value.lower() in ("true", "1")) == bool(_users(request, volume.name)):
            return False
    return True


async def list_volumes(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request)
    check_filter_keys(filters, {"name", "label", "driver", "dangling"})
    volumes = [v for v in _store(request).list() if _selected(request, v, filters)]
    return json_response({"Volumes": [_shape(v) for v in volumes], "Warnings": []})


async def inspect_volume(request: web.Request) -> web.StreamResponse:
    return json_response(_shape(_store(request).get(request.match_info["name"])))


async def create_volume(request: web.Request) -> web.StreamResponse:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise InvalidArgument("invalid JSON body") from None
    if not isinstance(body, dict):
        raise InvalidArgument("invalid body: expected a JSON object")
    driver = body.get("Driver") or "local"
    if driver != "local":
        raise InvalidArgument(f"error looking up volume plugin {driver}: plugin not found")
    name = str(body.get("Name") or "") or _anonymous_name()
    labels, options = body.get("Labels") or {}, body.get("DriverOpts") or {}
    if not isinstance(labels, dict) or not isinstance(options, dict):
        raise InvalidArgument("invalid Labels or DriverOpts: expected objects")
    volume = _store(request).create(
        name, from_epoch(time.time()), {str(k): str(v) for k, v in labels.items()},
        {str(k): str(v) for k, v in options.items()},
    )
    return json_response(_shape(volume), status=201)


def _anonymous_name() -> str:
    return secrets.token_hex(32)


async def remove_volume(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    _store(request).remove(name, _users(request, name))
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/volumes", list_volumes)
    route(router, "POST", "/volumes/create", create_volume)
    route(router, "GET", "/volumes/{name}", inspect_volume)
    route(router, "DELETE", "/volumes/{name}", remove_volume)
