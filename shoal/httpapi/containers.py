"""Docker's container endpoints for a node's task containers: list, inspect, logs, stats,
kill, stop and remove.

Containers are the node's own (nothing is forwarded to a manager). Killing or removing a
task container makes its task fail, and the orchestrator replaces it, as in swarm mode.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from shoal.api.timefmt import to_epoch
from shoal.errors import Conflict, InvalidArgument
from shoal.httpapi.common import (
    check_filter_keys,
    json_response,
    label_matches,
    parse_filters,
    query_bool,
    query_int,
    route,
)
from shoal.httpapi.containerjson import container_json, container_summary
from shoal.httpapi.containerstats import stats_of
from shoal.httpapi.logs import frame
from shoal.httpapi.taskcontainers import ContainerView, containers_of, resolve

__all__ = ["add_routes"]

_STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}
_FILTERS = {"id", "name", "label", "status", "exited", "health", "is-task", "ancestor",
            "network", "volume"}
_HEALTH = {"starting", "healthy", "unhealthy", "none"}
_STREAMS = {"stdout": 1, "stderr": 2}


def _check_filter_values(filters: dict[str, list[str]]) -> None:
    for value in filters.get("status", []):
        if value not in _STATUSES:
            raise InvalidArgument(f"invalid filter 'status={value}'")
    for value in filters.get("health", []):
        if value not in _HEALTH:
            raise InvalidArgument(f"invalid filter 'health={value}'")
    for value in filters.get("exited", []):
        if not value.lstrip("-").isdigit():
            raise InvalidArgument(f"invalid filter 'exited={value}'")
    for value in filters.get("name", []):
        try:
            re.compile(value)
        except re.error:
            raise InvalidArgument(f"invalid filter 'name={value}'") from None


def _any(values: list[str] | None, match: Any) -> bool:
    return not values or any(match(v) for v in values)


def _selected(view: ContainerView, filters: dict[str, list[str]]) -> bool:
    mounts = [str(m.get("Name") or m.get("Source") or "") for m in view.mounts]
    checks = [
        _any(filters.get("id"), view.id.startswith),
        _any(filters.get("name"), lambda v: re.search(v, "/" + view.name) is not None),
        all(label_matches(view.labels, e) for e in filters.get("label", [])),
        _any(filters.get("status"), lambda v: v == view.status),
        _any(filters.get("exited"), lambda v: view.status == "exited" and int(v) == view.exit_code),
        _any(filters.get("health"), lambda v: v == (view.health or "none")),
        _any(filters.get("is-task"), lambda v: v.lower() in ("1", "true")),
        _any(filters.get("ancestor"), lambda v: v in (view.image, view.image_id)),
        _any(filters.get("network"), lambda v: v in view.networks),
        _any(filters.get("volume"), lambda v: v in mounts),
    ]
    return all(checks)


async def list_containers(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request)
    check_filter_keys(filters, _FILTERS)
    _check_filter_values(filters)
    show_all = query_bool(request, "all")
    views = [
        v for v in containers_of(request).containers()
        if (show_all or v.running or "status" in filters) and _selected(v, filters)
    ]
    views.sort(key=lambda v: v.created, reverse=True)
    limit = query_int(request, "limit")
    if limit is not None and limit > 0:
        views = views[:limit]
    now = time.time()
    return json_response([container_summary(v, now) for v in views])


def _find(request: web.Request) -> ContainerView:
    return resolve(containers_of(request).containers(), request.match_info["id"])


async def inspect_container(request: web.Request) -> web.StreamResponse:
    return json_response(container_json(_find(request)))


def _read_lines(path: Path | None, offset: int) -> tuple[list[dict[str, str]], int]:
    """Complete JSON lines of the log from `offset`, and the offset after them."""
    if path is None:
        return [], offset
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    out = []
    for raw in data[:end].splitlines():
        try:
            entry = json.loads(raw)
            out.append({"time": str(entry["time"]), "stream": str(entry["stream"]),
                        "log": str(entry["log"])})
        except (ValueError, KeyError, TypeError):
            continue
    return out, offset + end


def _epoch_query(request: web.Request, name: str) -> float:
    text = request.query.get(name) or "0"
    try:
        return float(text)  # the CLI sends "seconds[.nanoseconds]" since the epoch
    except ValueError:
        raise InvalidArgument(f"invalid value for \"{name}\": {text!r}") from None


def _log_options(request: web.Request) -> tuple[set[str], int | None, float, float]:
    want = {s for s in ("stdout", "stderr") if query_bool(request, s)}
    if not want:
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    tail_text = request.query.get("tail", "all")
    try:
        tail = None if tail_text in ("", "all") else int(tail_text)
    except ValueError:
        raise InvalidArgument(f"invalid value for \"tail\": {tail_text!r}") from None
    return want, tail, _epoch_query(request, "since"), _epoch_query(request, "until")


async def container_logs(request: web.Request) -> web.StreamResponse:
    view = _find(request)
    want, tail, since, until = _log_options(request)
    follow, timestamps = query_bool(request, "follow"), query_bool(request, "timestamps")

    def chosen(entry: dict[str, str]) -> bool:
        at = to_epoch(entry["time"])
        return entry["stream"] in want and at >= since and (not until or at <= until)

    def encode(entry: dict[str, str]) -> bytes:
        prefix = f"{entry['time']} " if timestamps else ""
        return frame(_STREAMS.get(entry["stream"], 1), f"{prefix}{entry['log']}\n".encode())

    response = web.StreamResponse(
        headers={"Content-Type": "application/vnd.docker.multiplexed-stream"}
    )
    await response.prepare(request)
    entries, offset = _read_lines(view.log_path, 0)
    backlog = [e for e in entries if chosen(e)]
    if tail is not None and tail >= 0:
        backlog = backlog[-tail:] if tail else []
    for entry in backlog:
        await response.write(encode(entry))
    while follow and not until and not _client_gone(request):
        running = _still_running(request, view.id)
        await asyncio.sleep(0.2)
        entries, offset = _read_lines(view.log_path, offset)
        for entry in entries:
            if chosen(entry):
                await response.write(encode(entry))
        if not running:
            break
    await response.write_eof()
    return response


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _still_running(request: web.Request, container_id: str) -> bool:
    return any(v.id == container_id and v.running for v in containers_of(request).containers())


async def container_stats(request: web.Request) -> web.StreamResponse:
    view = _find(request)
    stream = query_bool(request, "stream", default=True)
    one_shot = query_bool(request, "one-shot")
    if not stream:
        return json_response(await stats_of(view, one_shot=one_shot))
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while _still_running(request, view.id) and not _client_gone(request):
        await response.write(json.dumps(await stats_of(view, one_shot=False)).encode() + b"\n")
    await response.write_eof()
    return response


def _signal_number(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        raise InvalidArgument(f"Invalid signal: {text}") from None


async def _wait_stopped(request: web.Request, container_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _still_running(request, container_id):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def kill_container(request: web.Request) -> web.StreamResponse:
    view = _find(request)
    signum = _signal_number(request.query.get("signal") or "SIGKILL")
    if not view.running:
        raise Conflict(f"cannot kill container: {view.id}: container {view.id} is not running")
    await containers_of(request).signal(view.id, signum)
    return web.Response(status=204)


async def stop_container(request: web.Request) -> web.StreamResponse:
    view = _find(request)
    if not view.running:
        return web.Response(status=304)
    timeout = query_int(request, "t")
    signum = _signal_number(request.query.get("signal") or view.stop_signal or "SIGTERM")
    await containers_of(request).signal(view.id, signum)
    if not await _wait_stopped(request, view.id, 10.0 if timeout is None else float(timeout)):
        await containers_of(request).signal(view.id, signal.SIGKILL)
        await _wait_stopped(request, view.id, 10.0)
    return web.Response(status=204)


async def remove_container(request: web.Request) -> web.StreamResponse:
    view = _find(request)
    if view.running:
        if not query_bool(request, "force"):
            raise Conflict(
                f'cannot remove container "/{view.name}": container is running: stop the '
                "container before removing or force remove"
            )
        await containers_of(request).signal(view.id, signal.SIGKILL)
        await _wait_stopped(request, view.id, 10.0)
    await containers_of(request).remove(view.id)
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/containers/json", list_containers)
    route(router, "GET", "/containers/{id}/json", inspect_container)
    route(router, "GET", "/containers/{id}/logs", container_logs)
    route(router, "GET", "/containers/{id}/stats", container_stats)
    route(router, "POST", "/containers/{id}/kill", kill_container)
    route(router, "POST", "/containers/{id}/stop", stop_container)
    route(router, "DELETE", "/containers/{id}", remove_container)
