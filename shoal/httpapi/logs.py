"""Task logs as Docker's multiplexed stream: 8-byte frame headers, one line per frame.

Each line reads `[<RFC3339Nano> ]<details> <message>` where details are the sorted
`com.docker.swarm.{node,service,task}.id=...` pairs the docker CLI uses to name the task.
With `follow`, files are polled for new lines and new tasks of the service are picked up.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from shoal.api.timefmt import to_epoch
from shoal.api.types import Task
from shoal.errors import InvalidArgument
from shoal.httpapi.common import query_bool
from shoal.httpapi.node_api import LocalNode

__all__ = ["frame", "stream_logs"]

_STREAMS = {"stdout": 1, "stderr": 2}


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


@dataclass
class _Cursor:
    task: Task
    path: Path
    offset: int = 0
    details: str = ""
    pending: bytes = field(default=b"")


def _details(task: Task) -> str:
    return ",".join(
        [
            f"com.docker.swarm.node.id={task.node_id}",
            f"com.docker.swarm.service.id={task.service_id}",
            f"com.docker.swarm.task.id={task.id}",
        ]
    )


def _lines(cursor: _Cursor) -> list[tuple[str, str, str]]:
    """New complete lines of the cursor's file: (time, stream, text)."""
    try:
        with cursor.path.open("rb") as fh:
            fh.seek(cursor.offset)
            data = fh.read()
    except FileNotFoundError:
        return []
    cursor.offset += len(data)
    data = cursor.pending + data
    *complete, cursor.pending = data.split(b"\n")
    out = []
    for raw in complete:
        try:
            entry = json.loads(raw)
            out.append((entry["time"], entry["stream"], entry["log"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


async def stream_logs(
    request: web.Request, daemon: LocalNode, select: Callable[[Task], bool]
) -> web.StreamResponse:
    store = daemon.require_manager()
    follow = query_bool(request, "follow")
    timestamps = query_bool(request, "timestamps")
    details = query_bool(request, "details")
    want = {s for s in ("stdout", "stderr") if query_bool(request, s)} or {"stdout", "stderr"}
    tail_text = request.query.get("tail", "all")
    try:
        tail = None if tail_text in ("", "all") else int(tail_text)
    except ValueError:
        raise InvalidArgument(f"invalid tail value {tail_text!r}") from None
    since_text = request.query.get("since") or "0"
    try:
        since = float(since_text)  # the API's "seconds[.nanoseconds]" since the epoch
    except ValueError:
        raise InvalidArgument(f"invalid since value {since_text!r}") from None

    response = web.StreamResponse(
        headers={"Content-Type": "application/vnd.docker.multiplexed-stream"}
    )
    await response.prepare(request)
    cursors: dict[str, _Cursor] = {}

    def scan() -> list[_Cursor]:
        fresh = []
        for task in store.view().tasks.find(select):
            if task.id not in cursors:
                cur = _Cursor(task, daemon.runtime.log_path(task.id), details=_details(task))
                cursors[task.id] = cur
                fresh.append(cur)
        return fresh

    def encode(cur: _Cursor, stamp: str, stream: str, text: str) -> bytes:
        prefix = f"{stamp} " if timestamps else ""
        extra = f"{cur.details} " if details else ""
        return frame(_STREAMS.get(stream, 1), f"{prefix}{extra}{text}\n".encode())

    first = scan()
    backlog: list[tuple[str, bytes]] = []
    for cur in first:
        lines = [
            ln for ln in _lines(cur) if ln[1] in want and (not since or to_epoch(ln[0]) >= since)
        ]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        backlog.extend((stamp, encode(cur, stamp, s, t)) for stamp, s, t in lines)
    backlog.sort(key=lambda item: item[0])
    for _, chunk in backlog:
        await response.write(chunk)
    while follow:
        await asyncio.sleep(0.2)
        scan()
        for cur in list(cursors.values()):
            for stamp, stream, text in _lines(cur):
                if stream in want:
                    await response.write(encode(cur, stamp, stream, text))
    await response.write_eof()
    return response
