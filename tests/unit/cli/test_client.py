"""`shoal.client.Client` on the standard library: keep-alive, reconnects, streams, TLS,
timeouts, query encoding; against real HTTP servers (unix socket, TCP + TLS) in a thread."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shoal.client import Client, _readable
from shoal.errors import APIError, ShoalError, Unavailable
from tests.polling import until

from .fakes import FakeDaemon, Reply, serve


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _EchoServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.client_address))
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[str, Any]]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext]]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(
            "127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    server.seen = []
    side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    side.load_cert_chain(cert_file, key_file)
    server.socket = side.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}", client_ctx
    finally:
        server.shutdown()
        server.server_close()


def test_tls_verifies_the_server(tls_server: tuple[str, ssl.SSLContext]) -> None:
    host, ctx = tls_server
    with Client(host, tls=ctx) as client:
        assert client.get("/_ping") == {"path": "/_ping"}
    with Client(host, tls=ssl.create_default_context()) as client, pytest.raises(Unavailable):
        client.get("/_ping")  # a server the context does not trust: refused, not read


def test_keep_alive_and_query(daemon: FakeDaemon) -> None:
    daemon.overrides[("GET", "/nodes")] = Reply(200, json=[])
    with serve(daemon) as host, Client(host) as client:
        client.get("/nodes", params={"a": True, "b": None, "c": {"x": [1]}, "d": 3})
        first = client._conn
        client.get("/nodes")
        assert client._conn is first  # one connection for both
    assert daemon.requests[0].params == {"a": "1", "c": '{"x": [1]}', "d": "3"}


def test_reconnects_after_the_daemon_closed_the_idle_connection(daemon: FakeDaemon) -> None:
    daemon.overrides[("GET", "/nodes")] = Reply(200, json=["n"])
    with serve(daemon) as host, Client(host) as client:
        assert client.get("/nodes") == ["n"]
        assert client._conn is not None and client._conn.sock is not None
        sock = client._conn.sock
        sock.shutdown(socket.SHUT_WR)  # the server sees EOF and closes its side
        until(lambda: _readable(sock), 10, "the server closed the idle connection",
              interval=0.01)  # fmt: skip
        assert client.get("/nodes") == ["n"]
        assert client._conn.sock is not sock


def test_stream_lines_and_errors(daemon: FakeDaemon) -> None:
    events = b'{"a": 1}\n{"b": 2}\npartial'
    daemon.overrides[("GET", "/events")] = Reply(200, content=events, chunked=True)
    daemon.overrides[("GET", "/nowhere")] = Reply(404, json={"message": "page not found"})
    with serve(daemon) as host, Client(host) as client:
        with client.stream("GET", "/events") as resp:
            assert list(resp.iter_lines()) == ['{"a": 1}', '{"b": 2}', "partial"]
            assert client.get("/info") == daemon.info  # other calls while streaming
        with pytest.raises(APIError, match="page not found"), client.stream("GET", "/nowhere"):
            pass


def test_timeout_and_missing_socket(daemon: FakeDaemon, tmp_path: Path) -> None:
    stuck = threading.Event()
    daemon.overrides[("GET", "/slow")] = lambda rec: (stuck.wait(5), Reply(200))[1]
    with serve(daemon) as host, Client(host, timeout=0.2) as client:
        with pytest.raises(ShoalError, match="timed out"):
            client.get("/slow")
        stuck.set()
    with pytest.raises(Unavailable, match="Is the daemon running"):
        Client(f"unix://{tmp_path}/none.sock").get("/_ping")
