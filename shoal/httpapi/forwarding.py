"""Followers answer writes as the leader would: requests that meet `NotLeader` are replayed
on the leader (`Control/Forward` over 2377) and its response is returned as is.

* `forward_middleware`: wraps the route handlers (inside the error middleware). A write
  to cluster objects (`CLUSTER_WRITES`: services, secrets, configs, networks, node
  updates) on a follower that knows its leader goes to the leader at once, as swarmkit's
  follower proxies its control API: the follower's handler would only have checked the
  request against a state that may lag the leader's, then met `NotLeader`. Any other
  handler that raises `NotLeader` has changed nothing (the write was refused before it
  was proposed, or its outcome is ambiguous exactly like a timeout), so the whole request,
  with the body it read, is sent to the leader. A replayed request is marked with
  `X-Shoal-Forwarded` and never forwarded again: meeting `NotLeader` there answers 503
  with `X-Shoal-Not-Leader`, which makes the follower retry on the next leader.
* `consistent_reads`: GETs of cluster objects on a manager first wait for a ReadIndex
  barrier, so `service inspect` right after an update made through any manager sees it
  (linearizable reads). A lone manager that leads answers at once; one that has just
  restarted waits until it has replayed its log (it never shows an empty state).
* `ForwardReplayer`: the leader's side, sending a replayed request as a real HTTP request
  to a private twin of its own API (the same middlewares and handlers as a local request)
  on a root-only unix socket: no test utilities, no private aiohttp attributes. The
  exchange is plain HTTP/1.1 on kept-alive connections (`shoal.httpapi.twin_http`):
  aiohttp's client was ~16 % of a leader's CPU under forwarded writes, more than the
  twin's whole handling of the request.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from shoal.cluster.forward import (
    FORWARDED_HEADER,
    NOT_LEADER_HEADER,
    ForwardRequest,
    ForwardResponse,
)
from shoal.errors import Unavailable
from shoal.httpapi.common import daemon_of, json_response
from shoal.httpapi.node_api import LeaderRaft
from shoal.httpapi.twin_http import TwinPool
from shoal.manager.raft.errors import NotLeader
from shoal.manager.raft_role import NO_LEADER, ElectedHere

__all__ = [
    "CLUSTER_WRITES",
    "ForwardReplayer",
    "consistent_reads",
    "forward_middleware",
    "replay_on",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SKIP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "expect"}
_CLUSTER_READS = re.compile(
    r"^(/v[\d.]+)?/(services|tasks|nodes|swarm|networks|secrets|configs)(/[^/]+)?/?$"
)
# writes that only the leader can do (the store's objects), forwarded before their handler
CLUSTER_WRITES = re.compile(
    r"^(/v[\d.]+)?/(?:(?:services|secrets|configs|networks)/(?:create|[^/]+(?:/update)?)"
    r"|nodes/[^/]+/update)/?$"
)
_WRITE_METHODS = {"POST", "PUT", "DELETE"}


@web.middleware
async def forward_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    daemon = daemon_of(request)
    forwarded = bool(request.headers.get(FORWARDED_HEADER))
    raft = daemon.raft
    if (
        raft is not None
        and not forwarded
        and request.method in _WRITE_METHODS
        and raft.leader_id not in (0, raft.id)
        and CLUSTER_WRITES.match(request.path)
    ):
        try:
            return await _forward(request, raft)
        except ElectedHere:
            pass  # this manager leads now: run the handler here
    for _ in range(3):  # leadership may land here while the request waits
        try:
            return await handler(request)
        except NotLeader as exc:
            if forwarded:
                refused = json_response({"message": exc.message}, status=503)
                refused.headers[NOT_LEADER_HEADER] = "1"
                return refused
            if raft is None:
                raise
            if await raft.await_own_leadership():
                continue  # elected here, not yet ready when the handler ran: run it here
            try:
                return await _forward(request, raft)
            except ElectedHere:
                continue
    raise Unavailable(NO_LEADER)


async def _forward(request: web.Request, raft: LeaderRaft) -> web.StreamResponse:
    """`request` replayed on the leader, answered with the leader's response."""
    body = await request.read()
    headers = [
        (str(k), str(v)) for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS
    ]
    answer = await raft.forward(ForwardRequest(request.method, request.path_qs, headers, body))
    response = web.Response(status=answer.status, body=answer.body)
    for k, v in answer.headers:
        if k.lower() not in _SKIP_HEADERS and k.lower() != NOT_LEADER_HEADER.lower():
            response.headers[k] = v
    return response


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


def replay_on(build: Callable[[], web.Application]) -> ForwardReplayer:
    """The leader's side of a forward: a private twin of the API app, built by `build`."""
    return ForwardReplayer(build)


class ForwardReplayer:
    """Runs replayed requests as real HTTP requests against a private twin of the API.

    The twin (same middlewares and routes) listens on a unix socket in a fresh 0700
    directory, so only root reaches it; a replayed request carries `X-Shoal-Forwarded`
    and so is never forwarded again. `run` is the `Forwarder` that `Control/Forward` calls.
    """

    def __init__(self, build: Callable[[], web.Application]) -> None:
        self._build = build
        self._runner: web.AppRunner | None = None
        self._dir: Path | None = None
        self._pool: TwinPool | None = None

    @property
    def socket(self) -> Path:
        assert self._dir is not None
        return self._dir / "forward.sock"

    async def start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="shoal-fwd-"))
        self._runner = web.AppRunner(self._build(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.UnixSite(self._runner, str(self.socket)).start()
        self._pool = TwinPool(str(self.socket))

    async def stop(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def run(self, req: ForwardRequest) -> ForwardResponse:
        if self._pool is None:
            raise Unavailable("this manager's API is not serving")
        headers = [(k, v) for k, v in req.headers if k.lower() not in _SKIP_HEADERS]
        headers.append((FORWARDED_HEADER, "1"))
        status, out, body = await self._pool.request(req.method, req.path, headers, req.body)
        return ForwardResponse(
            status, [(k, v) for k, v in out if k.lower() not in _SKIP_HEADERS], body
        )
