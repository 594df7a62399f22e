"""Followers answer writes as the leader would: requests that meet `NotLeader` are replayed
on the leader (`Control/Forward` over 2377) and its response is returned as is.

* `forward_middleware`: wraps the route handlers (inside the error middleware). A handler
  that raises `NotLeader` has changed nothing (the write was refused before it was
  proposed, or its outcome is ambiguous exactly like a timeout), so the whole request,
  with the body it read, is sent to the leader. A replayed request is marked with
  `X-Shoal-Forwarded` and never forwarded again: meeting `NotLeader` there answers 503
  with `X-Shoal-Not-Leader`, which makes the follower retry on the next leader.
* `consistent_reads`: GETs of cluster objects on a manager first wait for a ReadIndex
  barrier, so `service inspect` right after an update made through any manager sees it
  (linearizable reads). A lone manager that leads answers at once; one that has just
  restarted waits until it has replayed its log (it never shows an empty state).
* `executor(app)`: the leader's side, running a replayed request through `app` itself
  (the same middlewares and handlers as a local request).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from unittest import mock

from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request

from shoal.cluster.forward import (
    FORWARDED_HEADER,
    NOT_LEADER_HEADER,
    Forwarder,
    ForwardRequest,
    ForwardResponse,
)
from shoal.errors import Unavailable
from shoal.httpapi.common import daemon_of, json_response
from shoal.manager.raft.errors import NotLeader
from shoal.node.raft_role import NO_LEADER, ElectedHere

__all__ = ["consistent_reads", "executor", "forward_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SKIP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}
_CLUSTER_READS = re.compile(
    r"^(/v[\d.]+)?/(services|tasks|nodes|swarm|networks|secrets|configs)(/[^/]+)?/?$"
)


@web.middleware
async def forward_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    daemon = daemon_of(request)
    for _ in range(3):  # leadership may land here while the request waits
        try:
            return await handler(request)
        except NotLeader as exc:
            if request.headers.get(FORWARDED_HEADER):
                refused = json_response({"message": exc.message}, status=503)
                refused.headers[NOT_LEADER_HEADER] = "1"
                return refused
            raft = daemon.raft
            if raft is None:
                raise
            if await raft.await_own_leadership():
                continue  # elected here, not yet ready when the handler ran: run it here
            body = await request.read()
            headers = [
                (str(k), str(v))
                for k, v in request.headers.items()
                if k.lower() not in _SKIP_HEADERS
            ]
            try:
                answer = await raft.forward(
                    ForwardRequest(request.method, request.path_qs, headers, body)
                )
            except ElectedHere:
                continue
            response = web.Response(status=answer.status, body=answer.body)
            for k, v in answer.headers:
                if k.lower() not in _SKIP_HEADERS and k.lower() != NOT_LEADER_HEADER.lower():
                    response.headers[k] = v
            return response
    raise Unavailable(NO_LEADER)


@web.middleware
async def consistent_reads(request: web.Request, handler: Handler) -> web.StreamResponse:
    daemon = daemon_of(request)
    raft = daemon.raft
    if (
        request.method == "GET"
        and raft is not None
        and _CLUSTER_READS.match(request.path)
    ):
        await raft.barrier()
    return await handler(request)


def executor(app: web.Application) -> Forwarder:
    async def run(req: ForwardRequest) -> ForwardResponse:
        loop = asyncio.get_running_loop()
        payload = streams.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
        if req.body:
            payload.feed_data(req.body)
        payload.feed_eof()
        headers = {k: v for k, v in req.headers}
        headers[FORWARDED_HEADER] = "1"
        headers["Content-Length"] = str(len(req.body))
        request = make_mocked_request(
            req.method, req.path, headers=headers, app=app, payload=payload
        )
        response = await app._handle(request)
        raw = response.body if isinstance(response, web.Response) else None
        body = bytes(raw) if isinstance(raw, bytes | bytearray) else b""
        out = [
            (str(k), str(v)) for k, v in response.headers.items() if k.lower() not in _SKIP_HEADERS
        ]
        return ForwardResponse(response.status, out, body)

    return run
