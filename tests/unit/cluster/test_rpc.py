"""shoal-rpc/1 (shoal/cluster/rpc.py): calls multiplexed on one TLS connection, their
statuses, cancellation both ways, limits, and what bad input from a peer does."""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
import pytest

from shoal import timeouts
from shoal.ca.certs import MANAGER_SERVER_NAME, make_csr, new_key, sign_node_csr
from shoal.ca.files import NodeTLS
from shoal.ca.root import RootCA
from shoal.cluster.client import ClusterClient
from shoal.cluster.frames import client_context
from shoal.cluster.rpc import CANCEL, END, HALF, MAX_MESSAGE, MSG, OPEN, RPC_ALPN, pack
from shoal.cluster.server import ANYONE, MANAGERS, MEMBERS, Caller, ClusterServer
from shoal.cluster.tlsfront import server_context
from shoal.cluster.wire import Empty
from shoal.errors import Conflict, InvalidArgument, NotFound, ShoalError, Unavailable
from tests.polling import eventually


class Text(msgspec.Struct):
    text: str


class Number(msgspec.Struct):
    n: int


class Blob(msgspec.Struct):
    data: bytes


def _tls(ca: RootCA, node: str, role: str = "manager") -> NodeTLS:
    key = new_key()
    cert = sign_node_csr(ca, make_csr(key), node, role, "c1", datetime.timedelta(days=1),
                         datetime.datetime.now(datetime.UTC))
    return NodeTLS(ca.cert_pem, cert, key)


@dataclass
class Rig:
    ca: RootCA
    server: ClusterServer
    addr: str
    removed: set[str] = field(default_factory=set)
    hang_started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: list[str] = field(default_factory=list)
    produced: int = 0
    callers: list[Caller] = field(default_factory=list)

    def client(self, node: str = "m", role: str = "manager", *, cert: bool = True) -> ClusterClient:
        tls = _tls(self.ca, node, role) if cert else None
        return ClusterClient(self.addr, self.ca.cert_pem, tls)


def _register(rig: Rig) -> None:
    server = rig.server

    async def echo(req: Text, caller: Caller) -> Text:
        rig.callers.append(caller)
        return Text(req.text)

    async def fail(req: Text, caller: Caller) -> Text:
        kinds: dict[str, type[ShoalError]] = {
            "invalid": InvalidArgument, "missing": NotFound, "taken": Conflict,
            "later": Unavailable,
        }
        if req.text == "crash":
            raise RuntimeError("boom")
        raise kinds[req.text](f"it is {req.text}")

    async def hang(req: Text, caller: Caller) -> Text:
        rig.hang_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            rig.cancelled.append("hang")
        raise AssertionError("not reached")

    async def count(req: Number, caller: Caller) -> AsyncIterator[Number]:
        try:
            for i in range(req.n):
                yield Number(i)
            if req.n == 3:
                raise NotFound("no fourth")
            if req.n < 0:
                await asyncio.Event().wait()
        finally:
            rig.cancelled.append(f"count {req.n}")

    async def big(req: Number, caller: Caller) -> AsyncIterator[Blob]:
        for _ in range(req.n):
            rig.produced += 1
            yield Blob(bytes(1024 * 1024))

    async def total(requests: AsyncIterator[Number], caller: Caller) -> Number:
        return Number(sum([r.n async for r in requests]))

    async def chat(requests: AsyncIterator[Text], caller: Caller) -> AsyncIterator[Text]:
        async for r in requests:
            yield Text(r.text.upper())

    async def wrong(req: Text, caller: Caller) -> Empty:
        return Empty()

    async def sized(req: Number, caller: Caller) -> Blob:
        return Blob(bytes(req.n))

    server.add_unary("T/Echo", Text, MEMBERS, echo)
    server.add_unary("T/Join", Text, ANYONE, echo)
    server.add_unary("T/Boss", Text, MANAGERS, echo)
    server.add_unary("T/Raft", Text, MANAGERS, echo, removed_ok=True)
    server.add_unary("T/Fail", Text, MEMBERS, fail)
    server.add_unary("T/Hang", Text, MEMBERS, hang)
    server.add_unary("T/Wrong", Text, MEMBERS, wrong)
    server.add_unary("T/Sized", Number, MEMBERS, sized)
    server.add_stream("T/Count", Number, MEMBERS, count)
    server.add_stream("T/Big", Number, MEMBERS, big)
    server.add_client_stream("T/Total", Number, MEMBERS, total)
    server.add_duplex("T/Chat", Text, MEMBERS, chat)


async def _rig(port: int = 0, ca: RootCA | None = None) -> Rig:
    ca = ca or RootCA.generate("c1")
    removed: set[str] = set()
    server = ClusterServer(_tls(ca, "leader"), removed=lambda node: node in removed)
    rig = Rig(ca, server, "", removed)
    _register(rig)
    port = await server.start("127.0.0.1", port)
    rig.addr = f"127.0.0.1:{port}"
    return rig


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = await _rig()
    try:
        yield r
    finally:
        await r.server.stop()


async def test_concurrent_calls_of_every_shape_share_one_connection(rig: Rig) -> None:
    client = rig.client("w", "worker")
    try:
        session = client.stream("T/Count", Number(-1), Number)  # stays open, yields nothing
        held = asyncio.create_task(anext(session))
        out = client.client_stream("T/Total", Number)
        chat = client.duplex("T/Chat", Text)
        echoes = asyncio.gather(*(client.call("T/Echo", Text(f"e{i}"), Text) for i in range(20)))
        for i in range(1, 5):
            await out.write(Number(i))
        await chat.write(Text("hi"))
        assert [e.text for e in await echoes] == [f"e{i}" for i in range(20)]
        assert await chat.read() == Text("HI")
        assert len(rig.server.connections) == 1  # all of it on one connection
        conn = next(iter(rig.server.connections))
        assert len(conn) == 3  # the session, the client stream, the duplex call
        await out.done_writing()
        await chat.done_writing()
        assert await chat.read() is None  # the server's handler ended: so does the read
        await eventually(lambda: len(conn) == 1)  # T/Total answered once half-closed
        assert not held.done()
        held.cancel()  # the client gives up: the server's handler is cancelled
        await asyncio.gather(held, return_exceptions=True)
        await eventually(lambda: "count -1" in rig.cancelled and len(conn) == 0)
        assert rig.callers[0].identity is not None and rig.callers[0].identity.node_id == "w"
    finally:
        await client.close()


async def test_streams_end_when_the_server_ends_them(rig: Rig) -> None:
    client = rig.client()
    try:
        got = [m.n async for m in client.stream("T/Count", Number(5), Number)]
        assert got == [0, 1, 2, 3, 4]
        seen: list[int] = []
        with pytest.raises(NotFound, match="rpc error: code = NotFound desc = no fourth"):
            async for m in client.stream("T/Count", Number(3), Number):
                seen.append(m.n)
        assert seen == [0, 1, 2]
    finally:
        await client.close()


async def test_errors_map_to_the_same_classes_and_texts(rig: Rig) -> None:
    client = rig.client()
    try:
        cases: list[tuple[str, type[ShoalError], str]] = [
            ("invalid", InvalidArgument, "rpc error: code = InvalidArgument desc = it is invalid"),
            ("missing", NotFound, "rpc error: code = NotFound desc = it is missing"),
            ("taken", InvalidArgument, "rpc error: code = AlreadyExists desc = it is taken"),
            ("later", Unavailable, f"manager {rig.addr} unreachable: Unavailable: it is later"),
            ("crash", Unavailable, "Unknown: Unexpected RuntimeError: boom"),
        ]
        for text, kind, message in cases:
            with pytest.raises(ShoalError) as info:
                await client.call("T/Fail", Text(text), Text)
            assert type(info.value) is kind and message in info.value.message, text
        with pytest.raises(Unavailable, match="Unimplemented: unknown method T/Nope"):
            await client.call("T/Nope", Text(""), Text)
        assert (await client.call("T/Echo", Text("still"), Text)).text == "still"
    finally:
        await client.close()


async def test_authorization_by_certificate_per_call(rig: Rig) -> None:
    worker, anonymous, manager = rig.client("w", "worker"), rig.client(cert=False), rig.client("m")
    try:
        with pytest.raises(InvalidArgument) as refused:
            await worker.call("T/Boss", Text("x"), Text)
        assert refused.value.message == (
            "rpc error: code = PermissionDenied desc = permission denied: T/Boss is not "
            "allowed for a worker node (needs manager)"
        )
        assert (await worker.call("T/Echo", Text("ok"), Text)).text == "ok"  # same connection
        with pytest.raises(InvalidArgument) as anon:
            await anonymous.call("T/Echo", Text("x"), Text)
        assert anon.value.message == (
            "rpc error: code = Unauthenticated desc = T/Echo needs a node certificate of this swarm"
        )
        assert (await anonymous.call("T/Join", Text("join"), Text)).text == "join"
        assert rig.callers[-1].identity is None
        rig.removed.add("m")
        with pytest.raises(InvalidArgument, match="PermissionDenied desc = node m was removed"):
            await manager.call("T/Boss", Text("x"), Text)
        assert (await manager.call("T/Raft", Text("r"), Text)).text == "r"  # removed_ok
    finally:
        for c in (worker, anonymous, manager):
            await c.close()


async def test_a_timeout_cancels_the_call_on_the_server(rig: Rig) -> None:
    client = rig.client()
    try:
        with pytest.raises(Unavailable, match="DeadlineExceeded"):
            await client.call("T/Hang", Text(""), Text, timeout=0.3)
        await eventually(lambda: rig.cancelled == ["hang"])
        conn = next(iter(rig.server.connections))
        assert len(conn) == 0
        rig.hang_started.clear()
        task = asyncio.create_task(client.call("T/Hang", Text(""), Text))
        await rig.hang_started.wait()
        task.cancel()  # the caller is cancelled: so is the handler
        await asyncio.gather(task, return_exceptions=True)
        await eventually(lambda: rig.cancelled == ["hang", "hang"])
        assert (await client.call("T/Echo", Text("after"), Text)).text == "after"
    finally:
        await client.close()


async def test_a_broken_connection_fails_calls_in_flight_and_the_next_call_reconnects() -> None:
    rig = await _rig()
    port = int(rig.addr.rpartition(":")[2])
    client = rig.client()
    try:
        stuck = asyncio.create_task(client.call("T/Hang", Text(""), Text, timeout=30))
        stream = client.stream("T/Count", Number(-1), Number)
        reading = asyncio.create_task(anext(stream))
        await rig.hang_started.wait()
        await rig.server.stop()
        for task in (stuck, reading):
            with pytest.raises(Unavailable, match="unreachable"):
                await timeouts.wait_for(task, 10)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(Unavailable, match="unreachable"):  # nobody listens: at once
            await client.call("T/Echo", Text(""), Text, timeout=10)
        assert loop.time() - start < 2
        again = await _rig(port, rig.ca)
        try:
            assert (await client.call("T/Echo", Text("back"), Text)).text == "back"
        finally:
            await again.server.stop()
    finally:
        await client.close()


async def test_messages_up_to_16_mib_travel_larger_ones_are_refused(rig: Rig) -> None:
    client = rig.client()
    try:
        answer = await client.call("T/Sized", Number(15 * 1024 * 1024), Blob, timeout=30)
        assert len(answer.data) == 15 * 1024 * 1024
        with pytest.raises(Unavailable, match="ResourceExhausted: answer of"):
            await client.call("T/Sized", Number(MAX_MESSAGE + 1), Blob, timeout=30)
        with pytest.raises(Unavailable, match="ResourceExhausted: request of"):
            await client.call("T/Echo", Text("x" * (MAX_MESSAGE + 1)), Text)
        assert (await client.call("T/Echo", Text("fine"), Text)).text == "fine"
    finally:
        await client.close()


async def test_a_stream_writer_waits_for_a_reader_that_does_not_read(rig: Rig) -> None:
    raw = await Raw.connect(rig)  # reads nothing until told
    try:
        raw.send(pack(1, OPEN, b"T/Big"), pack(1, MSG, _enc({"n": 64})))
        await eventually(lambda: any(not c.frames.writable for c in rig.server.connections))
        # without the wait, all 64 (64 MiB) would be queued by now: writes never block
        assert 0 < rig.produced < 64
        kinds = []
        while (frame := await raw.frame()) is not None:
            kinds.append(frame[1])
            if frame[1] == END:
                break
        assert kinds == [MSG] * 64 + [END] and rig.produced == 64
    finally:
        raw.close()


async def test_a_reply_that_does_not_decode_fails_that_call_only(rig: Rig) -> None:
    client = rig.client()
    try:
        with pytest.raises(InvalidArgument, match="malformed answer"):
            await client.call("T/Wrong", Text(""), Text)
        assert (await client.call("T/Echo", Text("ok"), Text)).text == "ok"
    finally:
        await client.close()


async def test_reload_presents_the_renewed_certificate_to_the_next_handshake(rig: Rig) -> None:
    def presented() -> bytes:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        host, _, port = rig.addr.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as raw, \
                ctx.wrap_socket(raw) as conn:
            der = conn.getpeercert(binary_form=True)
        assert der is not None
        return der

    before = await asyncio.to_thread(presented)
    rig.server.reload(_tls(rig.ca, "leader"))
    after = await asyncio.to_thread(presented)
    assert before != after


# -- bad input from a peer ----------------------------------------------------------------
class Raw:
    """A shoal-rpc/1 client that writes whatever frames it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, rig: Rig, role: str = "manager") -> Raw:
        ctx = client_context(_tls(rig.ca, "raw", role), alpn=RPC_ALPN)
        host, _, port = rig.addr.rpartition(":")
        reader, writer = await asyncio.open_connection(
            host, int(port), ssl=ctx, server_hostname=MANAGER_SERVER_NAME
        )
        return cls(reader, writer)

    def send(self, *payloads: bytes) -> None:
        self.writer.write(b"".join(len(p).to_bytes(4, "big") + p for p in payloads))

    async def frame(self) -> tuple[int, int, bytes] | None:
        try:
            head = await timeouts.wait_for(self.reader.readexactly(4), 10)
            body = await self.reader.readexactly(int.from_bytes(head, "big"))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return None
        return int.from_bytes(body[:4], "big"), body[4], body[5:]

    def close(self) -> None:
        self.writer.transport.abort()


def _enc(value: object) -> bytes:
    return msgspec.msgpack.encode(value)


@pytest.mark.parametrize(
    ("what", "frames", "logged"),
    [
        ("a short frame", [b"\x00\x01"], "shorter than its header"),
        ("an unknown kind", [pack(1, 9)], "unknown kind 9"),
        ("a call never opened", [pack(7, MSG, b"x")], "MSG for call 7, never opened"),
        ("an id opened twice", [pack(1, OPEN, b"T/Count"), pack(1, OPEN, b"T/Count")],
         "OPEN of call 1 after call 1"),
        ("END from a client", [pack(1, OPEN, b"T/Count"), pack(1, END, b"OK\n")],
         "END from a client"),
        ("a name that is not UTF-8", [pack(1, OPEN, b"\xff\xfe")], "not UTF-8"),
    ],
)
async def test_a_peer_that_breaks_the_protocol_is_cut_off(
    rig: Rig, caplog: pytest.LogCaptureFixture, what: str, frames: list[bytes], logged: str
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.cluster.rpc")
    good = rig.client()
    raw = await Raw.connect(rig)
    try:
        stream = good.stream("T/Count", Number(-1), Number)
        opened = asyncio.create_task(anext(stream))
        await eventually(lambda: any(len(c) for c in rig.server.connections))
        raw.send(*frames)
        assert await raw.frame() is None, what  # closed, nothing answered
        lines = [r.getMessage() for r in caplog.records if "protocol error" in r.getMessage()]
        assert len(lines) == 1 and logged in lines[0], lines
        # nothing else changed: the other connection's call is still open and served
        assert not opened.done()
        assert (await good.call("T/Echo", Text("ok"), Text)).text == "ok"
        opened.cancel()
        await asyncio.gather(opened, return_exceptions=True)
        await stream.aclose()
    finally:
        raw.close()
        await good.close()


async def test_an_oversized_frame_closes_the_connection(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.cluster.rpc")
    raw = await Raw.connect(rig)
    try:
        raw.writer.write((MAX_MESSAGE + 64).to_bytes(4, "big") + b"\x00" * 16)
        assert await raw.frame() is None
        assert any("is over" in r.getMessage() for r in caplog.records)
    finally:
        raw.close()


async def test_a_request_that_does_not_decode_ends_its_call_only(rig: Rig) -> None:
    raw = await Raw.connect(rig)
    try:
        raw.send(pack(1, OPEN, b"T/Echo"), pack(1, MSG, _enc({"wrong": 1})))
        call_id, kind, body = await raw.frame() or (0, 0, b"")
        assert (call_id, kind) == (1, END)
        assert body.startswith(b"InvalidArgument\nmalformed T/Echo request")
        # a client stream: a bad request ends it the same way
        raw.send(pack(2, OPEN, b"T/Total"), pack(2, MSG, _enc({"n": 1})),
                 pack(2, MSG, b"\xc1"), pack(2, HALF))
        call_id, kind, body = await raw.frame() or (0, 0, b"")
        assert (call_id, kind) == (2, END) and body.startswith(b"InvalidArgument\n")
        # frames for calls that ended are dropped; the connection serves on
        raw.send(pack(1, MSG, b"late"), pack(2, CANCEL),
                 pack(3, OPEN, b"T/Echo"), pack(3, MSG, _enc({"text": "ok"})))
        assert await raw.frame() == (3, MSG, _enc({"text": "ok"}))
        assert await raw.frame() == (3, END, b"OK\n")
    finally:
        raw.close()


async def test_a_server_that_breaks_the_protocol_fails_the_calls_and_is_dialled_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.cluster.rpc")
    ca = RootCA.generate("c1")
    answers = [pack(99, MSG, b"x"), pack(1, OPEN, b"T/Echo")]
    served = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            await reader.readexactly(4)
            answer = answers[served]
            served += 1
            writer.write(len(answer).to_bytes(4, "big") + answer)
            await reader.read()  # until the client closes
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    listener = await asyncio.start_server(
        serve, "127.0.0.1", 0, ssl=server_context(_tls(ca, "bad"), [RPC_ALPN])
    )
    port = listener.sockets[0].getsockname()[1]
    client = ClusterClient(f"127.0.0.1:{port}", ca.cert_pem, _tls(ca, "m"))
    try:
        with pytest.raises(Unavailable, match="protocol error: MSG for call 99, never opened"):
            await client.call("T/Echo", Text(""), Text, timeout=5)
        with pytest.raises(Unavailable, match="protocol error: OPEN from a server"):
            await client.call("T/Echo", Text(""), Text, timeout=5)
        assert served == 2  # the second call dialled a new connection
        assert len([r for r in caplog.records if "protocol error" in r.getMessage()]) == 2
    finally:
        await client.close()
        listener.close()


async def test_close_fails_calls_in_flight_and_later_ones_with_unavailable(rig: Rig) -> None:
    client = rig.client()
    stuck = asyncio.create_task(client.call("T/Hang", Text(""), Text, timeout=30))
    await rig.hang_started.wait()
    await client.close()
    with pytest.raises(Unavailable, match="closed by this client"):
        await stuck
    with pytest.raises(Unavailable, match="channel closed"):
        await client.call("T/Echo", Text(""), Text)
    await eventually(lambda: rig.cancelled == ["hang"])  # the server heard of it


async def test_close_during_the_connection_attempt_is_unavailable_not_cancelled() -> None:
    gate = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await gate.wait()  # accepts TCP, never answers the TLS handshake
        writer.transport.abort()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    ca = RootCA.generate("c1")
    client = ClusterClient(f"127.0.0.1:{port}", ca.cert_pem, _tls(ca, "m"))
    try:
        call = asyncio.create_task(client.call("T/Echo", Text(""), Text, timeout=30))
        await eventually(lambda: client._connecting is not None)
        await client.close()
        with pytest.raises(Unavailable, match="channel closed"):
            await call
    finally:
        gate.set()
        listener.close()
