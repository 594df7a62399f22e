"""`shoal.client.Client` on the standard library: keep-alive, reconnects, streams, TLS,
timeouts, query encoding; against real HTTP servers (unix socket, TCP + TLS) in a thread."""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
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


# --- the HTTP/1.1 the client speaks, against a server answering scripted bytes ------------


class _Scripted:
    """A unix-socket server answering each request with the next scripted reply (bytes, or a
    callable given the connection); records every request's raw bytes and connection."""

    def __init__(self, path: str, replies: list[Any]) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[int, bytes]] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        serial = 0
        while self.replies:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            serial += 1
            with conn:
                self._connection(serial, conn)

    def _connection(self, serial: int, conn: socket.socket) -> None:
        pending = b""
        while self.replies:
            while b"\r\n\r\n" not in pending:
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
            while len(pending) < length:
                pending += conn.recv(65536)
            body, pending = pending[:length], pending[length:]
            self.requests.append((serial, head + b"\r\n\r\n" + body))
            reply = self.replies.pop(0)
            if callable(reply):
                if reply(conn) == "close":
                    return
            else:
                conn.sendall(reply)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[Any]:
    import tempfile

    folder = tempfile.mkdtemp(prefix="shoal-cli-")
    servers: list[_Scripted] = []

    def start(*replies: Any) -> tuple[str, _Scripted]:
        server = _Scripted(f"{folder}/s{len(servers)}.sock", list(replies))
        servers.append(server)
        return f"unix://{server.listener.getsockname()}", server

    yield start
    for server in servers:
        server.close()
    shutil.rmtree(folder, ignore_errors=True)


def _ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


def _close_after(data: bytes) -> Any:
    def send(conn: socket.socket) -> str:
        conn.sendall(data)
        return "close"

    return send


def test_bodies_framed_every_way(scripted: Any) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4;ext=1\r\n[1, \r\n3\r\n2]\n\r\n0\r\nX-Trailer: t\r\n\r\n")  # fmt: skip
    host, server = scripted(
        _ok(b'{"a": 1}'),
        chunked,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",  # HEAD: no body whatever the length
        _close_after(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"to the end"'),
        _ok(b"plain text", "Connection: close"),
        _ok(b""),
    )
    with Client(host) as client:
        assert client.get("/a") == {"a": 1}
        assert client.get("/b") == [1, 2]
        assert client.post("/c") is None
        assert client.request("HEAD", "/d") is None
        assert client.get("/e") == "to the end"  # read until the daemon closed
        assert client.get("/f") == "plain text"
        assert client.get("/g") is None
    # one connection for the first four answers, then one per answer that closes it
    assert [serial for serial, _ in server.requests] == [1, 1, 1, 1, 1, 2, 3]


def test_request_bytes(scripted: Any) -> None:
    host, server = scripted(*[_ok(b"{}")] * 4)
    with Client(host) as client:
        client.get("/services/a b", params={"filters": '{"name":{"x y/&=é":true}}', "n": None})
        client.post("/services/x/update")
        client.post("/auth", body={"k": "v"}, headers={"X-Registry-Auth": "abc"})
        client.post_bytes("/images/load", b"TAR")
    raw = [request for _, request in server.requests]
    assert raw[0] == (
        b"GET /v1.47/services/a%20b?filters=%7B%22name%22%3A%7B%22x+y%2F%26%3D%C3%A9%22%3A"
        b"true%7D%7D HTTP/1.1\r\nHost: shoal\r\nAccept-Encoding: identity\r\nAccept: */*\r\n\r\n"
    )
    assert b"\r\nContent-Length: 0\r\n\r\n" in raw[1]  # a bodyless POST says so
    assert raw[2].endswith(b'\r\nAccept: */*\r\nX-Registry-Auth: abc\r\nContent-Type: '
                           b'application/json\r\nContent-Length: 10\r\n\r\n{"k": "v"}')  # fmt: skip
    assert raw[3].endswith(b"Content-Type: application/x-tar\r\nContent-Length: 3\r\n\r\nTAR")


def test_query_encoding_is_urlencode() -> None:
    from urllib.parse import urlencode

    from shoal.client import _urlencode

    values = ["", "a", "a b", "x+y", "%41", "~._-", "/?#[]@!$&'()*+,;=", "é ü", "😀", "\t\n",
              '{"label":{"a=b":true}}']  # fmt: skip
    query = {f"k{v}": v for v in values}
    assert _urlencode(query) == urlencode(query)


def test_broken_answers_are_one_line_errors(scripted: Any) -> None:
    host, _ = scripted(
        _close_after(b""),
        _close_after(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
        _close_after(b"SSH-2.0-OpenSSH\r\n\r\n"),
        _close_after(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        _close_after(b"HTTP/1.1 200 OK\r\nContent-"),
        _ok(b"[]"),
    )
    with Client(host) as client:
        with pytest.raises(ShoalError, match=r"^Remote end closed connection without response$"):
            client.get("/1")
        with pytest.raises(ShoalError, match=r"IncompleteRead\(5 bytes read, 5 more expected\)"):
            client.get("/2")
        with pytest.raises(ShoalError, match="bad status line"):
            client.get("/3")
        with pytest.raises(ShoalError, match="invalid chunk size"):
            client.get("/4")
        with pytest.raises(ShoalError, match="closed connection in the answer's headers"):
            client.get("/5")
        assert client.get("/6") == []  # and the client goes on with a new connection


def test_stream_pieces_arrive_as_sent(scripted: Any) -> None:
    more = threading.Event()

    def stream(conn: socket.socket) -> str:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
        more.wait(10)
        conn.sendall(b"7\r\nsecond\n\r\n0\r\n\r\n")
        return "close"

    host, _ = scripted(stream)
    with Client(host) as client, client.stream("GET", "/logs") as resp:
        lines = resp.iter_lines()
        assert next(lines) == "first"  # before the daemon sent the rest
        more.set()
        assert list(lines) == ["second"]


def test_plain_tcp_host() -> None:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        with Client(f"tcp://127.0.0.1:{server.server_address[1]}") as client:
            assert client.get("/_ping") == {"path": "/_ping"}
            assert client.get("/info") == {"path": "/v1.47/info"}
        assert len({address for _, address in server.seen}) == 1  # kept alive
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(Unavailable, match="Is the daemon running"):
        Client(f"tcp://127.0.0.1:{server.server_address[1]}").get("/_ping")


def test_host_addresses() -> None:
    from shoal.client import _split_netloc

    assert _split_netloc("10.0.0.1:2375", 80) == ("10.0.0.1", 2375)
    assert _split_netloc("[::1]:2376", 80) == ("::1", 2376)
    assert _split_netloc("[::1]", 443) == ("::1", 443)
    assert _split_netloc("example.com", 80) == ("example.com", 80)
    with pytest.raises(ValueError, match="invalid host 'tcp://h:abc': nonnumeric port 'abc'"):
        Client("tcp://h:abc")


def test_plain_hosts_import_no_http_client_nor_ssl() -> None:
    import subprocess
    import sys

    code = ("import sys, shoal.client as c; c.Client('unix:///x'); c.Client('tcp://127.0.0.1:1')"
            "; print(sorted({'http.client', 'ssl', 'email', 'urllib.parse', 'socket'}"
            " & set(sys.modules)))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout == "[]\n"
