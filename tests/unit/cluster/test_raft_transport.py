"""The Raft transport over 2377: delivery in order, sender checks, reports, never raising,
a stream per peer whose end the receiver hears of."""

from __future__ import annotations

import datetime
import socket
from collections.abc import AsyncIterator

import pytest

from shoal.ca.certs import make_csr, new_key, sign_node_csr
from shoal.ca.files import NodeTLS
from shoal.ca.root import RootCA
from shoal.cluster.client import ClusterClient
from shoal.cluster.raft import RaftEndpoint, RaftEnvelope, encode_envelope, send_raft
from shoal.cluster.server import ClusterServer
from shoal.manager.raft.ids import raft_id
from shoal.manager.raft.tls_transport import RaftReceiver, RaftTransport
from shoal.raft import Message, MessageType, Snapshot, SnapshotMetadata, encode_message
from tests.polling import eventually


def _tls(ca: RootCA, node: str, role: str = "manager") -> NodeTLS:
    key = new_key()
    cert = sign_node_csr(ca, make_csr(key), node, role, "c1", datetime.timedelta(days=1),
                         datetime.datetime.now(datetime.UTC))
    return NodeTLS(ca.cert_pem, cert, key)


class Inbox:
    def __init__(self) -> None:
        self.got: list[Message] = []

    async def receive(self, messages: list[Message]) -> None:
        self.got.extend(messages)


class Reports:
    def __init__(self) -> None:
        self.unreachable: list[int] = []
        self.snapshots: list[tuple[int, bool]] = []

    def report_unreachable(self, peer: int) -> None:
        self.unreachable.append(peer)

    def report_snapshot(self, peer: int, ok: bool) -> None:
        self.snapshots.append((peer, ok))


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RootCA, ClusterServer, Inbox, RaftTransport, Reports]]:
    async for value in _pair():
        yield value


async def _pair(
    lost: list[int] | None = None,
) -> AsyncIterator[tuple[RootCA, ClusterServer, Inbox, RaftTransport, Reports]]:
    ca = RootCA.generate("c1")
    server = ClusterServer(_tls(ca, "b"))
    endpoint = RaftEndpoint()
    endpoint.register(server)
    port = await server.start("127.0.0.1", 0)
    inbox = Inbox()
    addrs = {raft_id("b"): f"127.0.0.1:{port}"}
    a_tls = _tls(ca, "a")
    sender = RaftTransport(lambda: "127.0.0.1:1", lambda: a_tls, addrs.get)
    b_side = RaftTransport(lambda: f"127.0.0.1:{port}", lambda: _tls(ca, "b"), lambda r: None)
    receiver = RaftReceiver(inbox, b_side, on_lost=None if lost is None else lost.append)
    endpoint.set_handler(receiver, receiver.lost)
    reports = Reports()
    sender.bind(reports)
    try:
        yield ca, server, inbox, sender, reports
    finally:
        await sender.close()
        await b_side.close()
        await server.stop()


def _msg(kind: MessageType, frm: str, to: str, index: int = 0) -> Message:
    return Message(type=kind, from_=raft_id(frm), to=raft_id(to), term=1, index=index)


async def test_messages_arrive_in_order_and_snapshots_are_reported(pair) -> None:  # type: ignore[no-untyped-def]
    _, _, inbox, sender, reports = pair
    b = raft_id("b")
    for i in range(5):
        await sender.send(b, [_msg(MessageType.APP, "a", "b", i)])
    snap = Message(type=MessageType.SNAP, from_=raft_id("a"), to=b, term=1,
                   snapshot=Snapshot(metadata=SnapshotMetadata(index=9, term=1)))
    await eventually(lambda: len(inbox.got) == 5)  # streamed: send does not wait for b
    await sender.send(b, [snap])  # a unary call: returns once b's driver has it
    assert [m.index for m in inbox.got[:5]] == [0, 1, 2, 3, 4]
    assert inbox.got[5].type is MessageType.SNAP
    assert reports.snapshots == [(b, True)] and reports.unreachable == []


async def test_a_dead_or_unknown_peer_is_reported_never_raised(pair) -> None:  # type: ignore[no-untyped-def]
    _, _, _, sender, reports = pair
    await sender.send(raft_id("nobody"), [_msg(MessageType.HEARTBEAT, "a", "nobody")])
    assert reports.unreachable == [raft_id("nobody")]
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    sender.learn(raft_id("c"), dead)
    snap = Message(type=MessageType.SNAP, from_=raft_id("a"), to=raft_id("c"), term=1,
                   snapshot=Snapshot(metadata=SnapshotMetadata(index=9, term=1)))
    await sender.send(raft_id("c"), [snap])
    assert reports.unreachable[-1] == raft_id("c")
    assert reports.snapshots == [(raft_id("c"), False)]


async def test_spoofed_senders_and_garbage_are_dropped_workers_refused(pair) -> None:  # type: ignore[no-untyped-def]
    ca, server, inbox, _, _ = pair
    client = ClusterClient(f"127.0.0.1:{server.port}", ca.cert_pem, _tls(ca, "a"))
    try:
        frames = [
            encode_message(_msg(MessageType.APP, "someone-else", "b")),  # not the caller
            b"\xc1 garbage",
            encode_message(_msg(MessageType.APP, "a", "b", 7)),
        ]
        await send_raft(client, encode_envelope(RaftEnvelope("127.0.0.1:9", frames)))
        await eventually(lambda: inbox.got)
        assert [(m.from_, m.index) for m in inbox.got] == [(raft_id("a"), 7)]
    finally:
        await client.close()
    worker = ClusterClient(f"127.0.0.1:{server.port}", ca.cert_pem, _tls(ca, "w", "worker"))
    try:
        from shoal.errors import InvalidArgument

        with pytest.raises(InvalidArgument, match="PermissionDenied"):
            await send_raft(worker, encode_envelope(RaftEnvelope("", [])))
    finally:
        await worker.close()


async def test_many_sends_share_one_stream_and_its_end_is_reported() -> None:
    lost: list[int] = []
    gen = _pair(lost)
    _, server, inbox, sender, reports = await gen.__anext__()
    try:
        b = raft_id("b")
        for i in range(200):
            await sender.send(b, [_msg(MessageType.APP, "a", "b", i)])
        await eventually(lambda: len(inbox.got) == 200)
        assert [m.index for m in inbox.got] == list(range(200))
        assert reports.unreachable == [] and lost == []
        # one framed connection carried them all, no shoal-rpc/1 connection was opened
        assert server.framed == {"Raft/Stream": 1} and not server.connections
        await sender.close()  # the sender goes away: b hears its stream end
        await eventually(lambda: lost == [raft_id("a")])
    finally:
        await gen.aclose()


async def test_a_stream_is_opened_again_after_the_peer_restarts() -> None:
    lost: list[int] = []
    gen = _pair(lost)
    ca, server, inbox, sender, reports = await gen.__anext__()
    try:
        b = raft_id("b")
        await sender.send(b, [_msg(MessageType.APP, "a", "b", 1)])
        await eventually(lambda: len(inbox.got) == 1)
        port = server.port
        await server.stop()
        await eventually(lambda: lost == [raft_id("a")])

        async def noticed() -> bool:  # b is down: sends are lost, soon reported so
            await sender.send(b, [_msg(MessageType.APP, "a", "b", 2)])
            return bool(reports.unreachable) and reports.unreachable[-1] == b

        await eventually(noticed)
        again = ClusterServer(_tls(ca, "b"))
        endpoint = RaftEndpoint()
        endpoint.register(again)
        endpoint.set_handler(RaftReceiver(inbox, sender))
        await again.start("127.0.0.1", port)
        try:
            async def delivered() -> bool:
                await sender.send(b, [_msg(MessageType.APP, "a", "b", 3)])
                return any(m.index == 3 for m in inbox.got)

            await eventually(delivered)
        finally:
            await again.stop()
    finally:
        await gen.aclose()


async def test_a_peer_that_speaks_no_frames_is_reported_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a front that offers no shoal-frames/1 (so no ALPN protocol is agreed on for Raft)
    import shoal.cluster.server as server_module

    monkeypatch.setattr(server_module, "FRAMES_ALPN", "older-shoal/0")
    gen = _pair()
    _, server, inbox, sender, reports = await gen.__anext__()
    try:
        b = raft_id("b")
        await sender.send(b, [_msg(MessageType.APP, "a", "b", 1)])
        assert reports.unreachable == [b] and inbox.got == []
        assert server.framed == {}
    finally:
        await gen.aclose()
