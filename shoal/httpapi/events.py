"""GET /events: the swarm's changes as Docker's event stream, from any manager.

Replays the store's ring of recent events (`Store.recent`) newer than `since`, then streams
what this replica applies (its `Store.watch()` queue) until `until` or the client goes.
Each message is one JSON object per line. A worker has no store: it streams nothing (docker
on a worker prints no swarm events either) but still honours `until`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from shoal import __version__, timeouts
from shoal.httpapi.common import API_VERSION, daemon_of, parse_filters, route
from shoal.manager.state.store import Commit, Event, Store
from shoal.observe.events import (
    EventFilter,
    docker_event,
    parse_event_filters,
    parse_timestamp,
)

__all__ = ["add_routes"]


def _selected(events: Iterable[Event], flt: EventFilter, since: int, until: int | None,
              ) -> list[dict[str, Any]]:
    out = []
    for event in events:
        msg = docker_event(event)
        if msg is None or msg["timeNano"] < since or (until is not None
                                                      and msg["timeNano"] > until):
            continue
        if flt.matches(msg):
            out.append(msg)
    return out


async def _write(response: web.StreamResponse, messages: list[dict[str, Any]]) -> None:
    if messages:
        await response.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))


async def _stream_live(response: web.StreamResponse, queue: asyncio.Queue[Event | Commit],
                       flt: EventFilter, until: int | None) -> None:
    while True:
        timeout = None if until is None else (until - time.time_ns()) / 1e9
        if timeout is not None and timeout <= 0:
            return
        try:
            item = await timeouts.wait_for(queue.get(), timeout)
        except TimeoutError:
            return
        if isinstance(item, Event):
            await _write(response, _selected([item], flt, 0, until))


async def events(request: web.Request) -> web.StreamResponse:
    flt = parse_event_filters(parse_filters(request))
    since_q, until_q = request.query.get("since"), request.query.get("until")
    since = parse_timestamp("since", since_q) if since_q else None
    until = parse_timestamp("until", until_q) if until_q else None
    store: Store | None = daemon_of(request).store
    queue = store.watch() if store is not None else None
    replay = list(store.recent) if store is not None and since is not None else []
    response = web.StreamResponse(headers={
        "Content-Type": "application/json", "Api-Version": API_VERSION, "Ostype": "linux",
        "Server": f"shoal/{__version__} (linux)", "Docker-Experimental": "false",
    })
    try:
        await response.prepare(request)
        await _write(response, _selected(replay, flt, since or 0, until))
        if queue is not None:
            await _stream_live(response, queue, flt, until)
        elif until is None:
            await asyncio.Event().wait()  # a worker: no swarm events, until the client goes
        elif until > time.time_ns():
            await asyncio.sleep((until - time.time_ns()) / 1e9)
    finally:
        if store is not None and queue is not None:
            store.unwatch(queue)
    await response.write_eof()
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/events", events)
