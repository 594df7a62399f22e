"""`Control/ForwardStream`: a follower's requests share one duplex call to the leader, run
there concurrently, each answer matched to its request; a broken call fails the requests
in flight (never hangs them) and the next request opens a new call."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from shoal import timeouts
from shoal.ca.certs import make_csr, new_key, sign_node_csr
from shoal.ca.files import NodeTLS
from shoal.ca.root import RootCA
from shoal.cluster.client import ClusterClient
from shoal.cluster.forward import ForwardEndpoint, ForwardRequest, ForwardResponse, forward
from shoal.cluster.server import ClusterServer
from shoal.errors import InvalidArgument, Unavailable


def _tls(ca: RootCA, node: str, role: str = "manager") -> NodeTLS:
    key = new_key()
    cert = sign_node_csr(ca, make_csr(key), node, role, "c1", datetime.timedelta(days=1),
                         datetime.datetime.now(datetime.UTC))
    return NodeTLS(ca.cert_pem, cert, key)


def _req(path: str) -> ForwardRequest:
    return ForwardRequest("POST", path, [("Content-Type", "application/json")], b"{}")


async def test_requests_share_one_call_and_answers_find_their_requests() -> None:
    ca = RootCA.generate("c1")
    release = asyncio.Event()
    seen: list[str] = []

    async def executor(req: ForwardRequest) -> ForwardResponse:
        seen.append(req.path)
        if req.path == "/slow":
            await release.wait()  # answered after the later ones
        if req.path == "/broken":
            raise Unavailable("the API twin is gone")
        return ForwardResponse(201, [("X-Path", req.path)], req.path.encode())

    server = ClusterServer(_tls(ca, "leader"))
    ForwardEndpoint(lambda: executor).register(server)
    port = await server.start("127.0.0.1", 0)
    client = ClusterClient(f"127.0.0.1:{port}", ca.cert_pem, _tls(ca, "follower"))
    try:
        slow = asyncio.create_task(forward(client, _req("/slow")))
        fast = await asyncio.gather(*(forward(client, _req(f"/r{i}")) for i in range(50)))
        assert [r.body for r in fast] == [f"/r{i}".encode() for i in range(50)]
        assert not slow.done()  # the others did not wait behind it
        with pytest.raises(Unavailable, match="twin is gone"):
            await forward(client, _req("/broken"))
        release.set()
        assert (await slow).body == b"/slow"
        # one framed connection carried every request, no shoal-rpc/1 connection was opened
        assert server.framed == {"Control/ForwardStream": 1} and not server.connections
    finally:
        await client.close()
        await server.stop()


async def test_a_broken_call_fails_what_is_in_flight_and_the_next_one_reconnects() -> None:
    ca = RootCA.generate("c1")
    hang = asyncio.Event()

    async def executor(req: ForwardRequest) -> ForwardResponse:
        if req.path == "/hang":
            await hang.wait()
        return ForwardResponse(200, [], b"ok")

    server = ClusterServer(_tls(ca, "leader"))
    ForwardEndpoint(lambda: executor).register(server)
    port = await server.start("127.0.0.1", 0)
    client = ClusterClient(f"127.0.0.1:{port}", ca.cert_pem, _tls(ca, "follower"))
    try:
        stuck = asyncio.create_task(forward(client, _req("/hang")))
        assert (await forward(client, _req("/ok"))).body == b"ok"
        await server.stop()  # the leader goes away with a request in flight
        with pytest.raises(Unavailable):
            await timeouts.wait_for(stuck, 10)
        again = ClusterServer(_tls(ca, "leader"))
        ForwardEndpoint(lambda: executor).register(again)
        await again.start("127.0.0.1", port)
        try:
            for _ in range(100):  # the channel reconnects with its short backoff
                try:
                    assert (await forward(client, _req("/ok"), timeout=5)).body == b"ok"
                    break
                except Unavailable:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("no answer from the restarted leader")
        finally:
            await again.stop()
    finally:
        await client.close()


async def test_workers_may_not_forward() -> None:
    ca = RootCA.generate("c1")

    async def executor(req: ForwardRequest) -> ForwardResponse:
        return ForwardResponse(200, [], b"")

    server = ClusterServer(_tls(ca, "leader"))
    ForwardEndpoint(lambda: executor).register(server)
    port = await server.start("127.0.0.1", 0)
    worker = ClusterClient(f"127.0.0.1:{port}", ca.cert_pem, _tls(ca, "w", "worker"))
    try:
        with pytest.raises(InvalidArgument, match="PermissionDenied"):
            await forward(worker, _req("/x"), timeout=10)
    finally:
        await worker.close()
        await server.stop()
