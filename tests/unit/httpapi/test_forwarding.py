"""A follower's API: a handler that meets `NotLeader` is replayed on the leader (the general
fallback; the write handlers' control calls go as calls, test_control_proxy.py); the leader
replays a request on its twin over plain HTTP/1.1 (shoal.httpapi.twin_http)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shoal.cluster.forward import (
    FORWARDED_HEADER,
    NOT_LEADER_HEADER,
    ForwardRequest,
    ForwardResponse,
)
from shoal.errors import InvalidArgument, Unavailable
from shoal.httpapi.common import DAEMON_KEY
from shoal.httpapi.forwarding import forward_middleware, replay_on
from shoal.httpapi.twin_http import TwinPool
from shoal.manager.raft.errors import NotLeader


class FakeRaft:
    def __init__(self, leader_id: int, own_id: int = 1) -> None:
        self.id = own_id
        self.leader_id = leader_id
        self.forwarded: list[ForwardRequest] = []

    @property
    def is_leader(self) -> bool:
        return self.leader_id == self.id

    async def await_own_leadership(self) -> bool:
        return self.is_leader

    async def forward(self, req: ForwardRequest) -> ForwardResponse:
        self.forwarded.append(req)
        return ForwardResponse(201, [("Content-Type", "application/json"),
                                     ("X-Leader", "m2")], b'{"ID":"from-leader"}')


class FakeDaemon:
    def __init__(self, raft: FakeRaft | None) -> None:
        self.raft = raft


@pytest.fixture
async def follower() -> AsyncIterator[tuple[TestClient, FakeRaft, list[str]]]:
    raft = FakeRaft(leader_id=2)
    ran: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ran.append(f"{request.method} {request.path}")
        if request.path.startswith("/refused"):  # as a write that reached the store
            raise NotLeader("raft: not the leader", 2)
        return web.json_response({"local": True})

    app = web.Application(middlewares=[forward_middleware])
    app[DAEMON_KEY] = FakeDaemon(raft)  # type: ignore[assignment]
    app.router.add_route("*", "/{tail:.*}", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, raft, ran
    finally:
        await client.close()


@pytest.mark.parametrize("method,path,headers", [
    ("GET", "/v1.47/services", {}),
    ("POST", "/v1.47/swarm/leave", {}),  # this node's own business
    ("POST", "/v1.47/networks/n1/connect", {}),
    ("DELETE", "/v1.47/nodes/n1", {}),  # judged by the node the user asked (self or not)
    ("POST", "/v1.47/services/create", {FORWARDED_HEADER: "1"}),  # a replay: never again
    ("POST", "/v1.47/secrets/create", {}),  # its control call, not the request, is proxied
])
async def test_other_requests_run_their_handler(
    follower: tuple[TestClient, FakeRaft, list[str]], method: str, path: str,
    headers: dict[str, str],
) -> None:
    client, raft, ran = follower
    resp = await client.request(method, path, headers=headers)
    assert resp.status == 200
    assert ran == [f"{method} {path}"]
    assert raft.forwarded == []


async def test_a_handler_that_meets_not_leader_is_replayed_on_the_leader(
    follower: tuple[TestClient, FakeRaft, list[str]],
) -> None:
    client, raft, ran = follower
    resp = await client.post("/refused/x?version=3", data=b'{"Name":"web"}',
                             headers={"Content-Type": "application/json"})
    assert resp.status == 201
    assert await resp.json() == {"ID": "from-leader"}
    assert resp.headers["X-Leader"] == "m2"
    assert ran == ["POST /refused/x"]  # the handler ran once, here, then the leader's answer
    [req] = raft.forwarded
    assert (req.method, req.path, req.body) == ("POST", "/refused/x?version=3", b'{"Name":"web"}')
    assert ("Content-Type", "application/json") in req.headers
    assert not any(k.lower() in ("host", "content-length") for k, _ in req.headers)


async def test_a_replay_that_meets_not_leader_is_refused_never_forwarded_again(
    follower: tuple[TestClient, FakeRaft, list[str]],
) -> None:
    client, raft, ran = follower
    resp = await client.post("/refused/x", headers={FORWARDED_HEADER: "1"})
    assert resp.status == 503 and resp.headers[NOT_LEADER_HEADER] == "1"
    assert (await resp.json())["message"] == "raft: not the leader"
    assert ran == ["POST /refused/x"] and raft.forwarded == []


async def test_a_follower_that_knows_no_leader_runs_the_handler(
    follower: tuple[TestClient, FakeRaft, list[str]],
) -> None:
    client, raft, ran = follower
    raft.leader_id = 0
    resp = await client.post("/v1.47/services/create", json={})
    assert resp.status == 200 and ran == ["POST /v1.47/services/create"]
    raft.leader_id = raft.id  # and the leader itself never forwards
    resp = await client.post("/v1.47/services/create", json={})
    assert resp.status == 200 and raft.forwarded == []


# -- the leader's side: HTTP/1.1 to the twin --------------------------------------------

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A unix-socket server answering each request with what `answer` writes."""

    def __init__(self, path: Path, answer: Answer) -> None:
        self.path, self.answer = path, answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.answer(head, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()


def _writes(*chunks: bytes, close: bool = False) -> Answer:
    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        for c in chunks:
            writer.write(c)
        if close:
            writer.close()
    return answer


async def test_requests_reuse_one_connection_and_read_content_length_bodies(
    tmp_path: Path,
) -> None:
    ok = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    async with RawServer(tmp_path / "s", _writes(ok)) as server:
        pool = TwinPool(str(server.path))
        for _ in range(3):
            status, headers, body = await pool.request(
                "POST", "/v1.47/secrets/create?x=1", [("X-Shoal-Forwarded", "1")], b"abc")
            assert (status, body) == (201, b"{}")
            assert ("Content-Type", "application/json") in headers
        pool.close()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1.47/secrets/create?x=1 HTTP/1.1\r\n")
    assert b"\r\nX-Shoal-Forwarded: 1\r\n" in first and first.endswith(b"\r\n\r\nabc")


async def test_chunked_bodies_interim_answers_and_closed_connections(tmp_path: Path) -> None:
    chunked = (b"HTTP/1.1 100 Continue\r\n\r\n"
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
    async with RawServer(tmp_path / "s", _writes(chunked, close=True)) as server:
        pool = TwinPool(str(server.path))
        for _ in range(2):
            status, _, body = await pool.request("GET", "/x", [], b"")
            assert (status, body) == (200, b"abcde")
        pool.close()
    assert server.connections == 2  # "Connection: close": not reused
    unframed = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end"
    async with RawServer(tmp_path / "u", _writes(unframed, close=True)) as server:
        status, _, body = await TwinPool(str(server.path)).request("GET", "/x", [], b"")
        assert (status, body) == (200, b"to the end")


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-not-http\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
])
async def test_a_broken_answer_is_unavailable_and_the_connection_dropped(
    tmp_path: Path, answer: bytes
) -> None:
    async with RawServer(tmp_path / "s", _writes(answer, close=True)) as server:
        pool = TwinPool(str(server.path))
        with pytest.raises(Unavailable):
            await pool.request("GET", "/x", [], b"")
        assert pool._idle == []


@pytest.mark.parametrize("method,path,headers", [
    ("GET", "/x", [("X-Bad", "a\r\nInjected: yes")]),
    ("GET", "/x", [("Bad Name", "v")]),
    ("GET", "/x HTTP/1.1\r\nInjected: yes\r\n\r\nGET /y", []),
    ("GET", "no-slash", []),
    ("GE T", "/x", []),
])
async def test_a_request_that_could_split_is_refused_before_a_byte_is_sent(
    tmp_path: Path, method: str, path: str, headers: list[tuple[str, str]]
) -> None:
    async with RawServer(tmp_path / "s", _writes(b"")) as server:
        with pytest.raises(InvalidArgument):
            await TwinPool(str(server.path)).request(method, path, headers, b"")
        assert server.connections == 0


def _twin_app() -> web.Application:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="twin")

    app = web.Application()
    app.router.add_get("/hello", hello)
    return app


async def test_the_twin_socket_lives_in_the_data_root_and_replaces_a_killed_daemons(
    tmp_path: Path,
) -> None:
    """A killed daemon runs no cleanup: its socket is replaced at the next start, and no
    directory is left per start (one temporary directory per start was, before)."""
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    (run / "forward.sock").write_text("left by a killed daemon")
    replayer = replay_on(_twin_app, None, tmp_path)
    await replayer.start()
    try:
        assert replayer.socket == run / "forward.sock" and replayer.socket.is_socket()
        assert run.stat().st_mode & 0o777 == 0o700  # root only, whatever it was
        answer = await replayer.run(ForwardRequest("GET", "/hello", [], b""))
        assert (answer.status, answer.body) == (200, b"twin")
    finally:
        await replayer.stop()
    assert list(run.iterdir()) == []


async def test_a_data_root_too_long_for_a_socket_gets_a_temporary_directory(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 100)
    replayer = replay_on(_twin_app, None, deep)
    await replayer.start()
    where = replayer.socket.parent
    try:
        assert not deep.exists() and where.name.startswith("shoal-fwd-")
        answer = await replayer.run(ForwardRequest("GET", "/hello", [], b""))
        assert answer.status == 200
    finally:
        await replayer.stop()
    assert not where.exists()
