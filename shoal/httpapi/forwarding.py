"""Followers answer writes as the leader would.

* The write handlers of cluster objects (services, secrets, configs, networks, node
  updates) run wherever the request arrives and make their control API call through
  `shoal.httpapi.control`, which a follower that knows its leader proxies to the leader
  (as swarmkit's raft proxy sends a follower's control API calls on): the leader runs the
  controlapi function on its store, with no HTTP on its side.
* `forward_middleware`: the general fallback, wrapping the route handlers (inside the
  error middleware). A handler that raises `NotLeader` has changed nothing (the write was
  refused before it was proposed, or its outcome is ambiguous exactly like a timeout), so
  the whole request, with the body it read, is replayed on the leader (`Control/Forward`
  over 2377) and its response returned as is. A replayed request is marked with
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
  twin's whole handling of the request. A control call (method `CONTROL`) goes to the
  control runner instead (`shoal.httpapi.control.runner`).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from shoal.cluster.forward import (
    CONTROL_METHOD,
    FORWARDED_HEADER,
    NOT_LEADER_HEADER,
    Forwarder,
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
    "ForwardReplayer",
    "consistent_reads",
    "forward_middleware",
    "replay_on",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SUN_PATH_MAX = 107  # sockaddr_un's sun_path holds 108 bytes with the NUL
_SKIP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "expect"}
_CLUSTER_READS = re.compile(
    r"^(/v[\d.]+)?/(services|tasks|nodes|swarm|networks|secrets|configs)(/[^/]+)?/?$"
)


@web.middleware
async def forward_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    daemon = daemon_of(request)
    forwarded = bool(request.headers.get(FORWARDED_HEADER))
    raft = daemon.raft
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


def replay_on(
    build: Callable[[], web.Application],
    control: Forwarder | None = None,
    run_dir: Path | None = None,
) -> ForwardReplayer:
    """The leader's side of a forward: a private twin of the API app, built by `build`,
    and `control` for the write handlers' control calls (shoal/httpapi/control.py); its
    socket in `run_dir` (the daemon's data root)."""
    return ForwardReplayer(build, control, run_dir)


class ForwardReplayer:
    """Runs replayed requests as real HTTP requests against a private twin of the API.

    The twin (same middlewares and routes) listens on a unix socket in a 0700 directory,
    so only root reaches it; a replayed request carries `X-Shoal-Forwarded` and so is
    never forwarded again. `run` is the `Forwarder` that `Control/Forward` calls.

    The directory is `<run_dir>/run`, and a socket left there by a daemon that was killed
    is replaced at the next start: a killed daemon runs no cleanup, and a fresh temporary
    directory per start left one behind for every kill (1,540 under /tmp after a day of
    lab tests). Without `run_dir`, or where the path would pass a unix socket's length
    limit, it is a temporary directory removed at `stop`.
    """

    def __init__(
        self,
        build: Callable[[], web.Application],
        control: Forwarder | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self._build = build
        self._control = control
        self._run_dir = run_dir
        self._runner: web.AppRunner | None = None
        self._dir: Path | None = None
        self._temporary = False
        self._pool: TwinPool | None = None

    @property
    def socket(self) -> Path:
        assert self._dir is not None
        return self._dir / "forward.sock"

    def _socket_dir(self) -> Path:
        if self._run_dir is not None:
            fixed = Path(self._run_dir) / "run"
            if len(str(fixed / "forward.sock")) <= _SUN_PATH_MAX:
                fixed.mkdir(mode=0o700, parents=True, exist_ok=True)
                fixed.chmod(0o700)
                (fixed / "forward.sock").unlink(missing_ok=True)
                self._temporary = False
                return fixed
        self._temporary = True
        return Path(tempfile.mkdtemp(prefix="shoal-fwd-"))

    async def start(self) -> None:
        self._dir = self._socket_dir()
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
            if self._temporary:
                shutil.rmtree(self._dir, ignore_errors=True)
            else:
                (self._dir / "forward.sock").unlink(missing_ok=True)
            self._dir = None

    async def run(self, req: ForwardRequest) -> ForwardResponse:
        if req.method == CONTROL_METHOD:  # a control API call: no HTTP on this side
            if self._control is None:
                raise Unavailable("this manager runs no control calls")
            return await self._control(req)
        if self._pool is None:
            raise Unavailable("this manager's API is not serving")
        headers = [(k, v) for k, v in req.headers if k.lower() not in _SKIP_HEADERS]
        headers.append((FORWARDED_HEADER, "1"))
        status, out, body = await self._pool.request(req.method, req.path, headers, req.body)
        return ForwardResponse(
            status, [(k, v) for k, v in out if k.lower() not in _SKIP_HEADERS], body
        )
