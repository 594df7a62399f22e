"""A fake Engine API daemon for the CLI tests, and a runner wired to it.

`FakeDaemon` keeps services, tasks and nodes in memory and answers the calls the CLI makes
(Docker's paths, bodies and errors). `serve(daemon)` puts it behind a real HTTP/1.1 server
on a unix socket (a thread of this process), so the real `shoal.client.Client` is exercised
end to end (query encoding, keep-alive, error decoding, chunked streams); it records every
request. The CLI receives the client through `CliContext(client_factory=...)`, its
injection point; clocks and sleeping are fakes too, so waiting costs no real time.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from socketserver import ThreadingUnixStreamServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from click.testing import CliRunner, Result

from shoal.cli.context import CliContext
from shoal.cli.main import cli
from shoal.client import Client

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class Recorded:
    method: str
    path: str  # without the /v1.47 prefix
    params: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Hangup(Exception):
    """Raised by an override: the server closes the connection without an answer."""


@dataclass
class Reply:
    """An answer of the fake daemon: a JSON body, raw bytes, or raw bytes sent chunked."""

    status: int
    json: Any = None
    content: bytes = b""
    chunked: bool = False

    def body(self) -> bytes:
        return self.content if self.json is None else json.dumps(self.json).encode()


def _json(status: int, body: Any) -> Reply:
    return Reply(status, json=body)


def _error(status: int, message: str) -> Reply:
    return Reply(status, json={"message": message})


@dataclass
class FakeDaemon:
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    swarm: dict[str, Any] = field(default_factory=dict)
    logs: bytes = b""
    requests: list[Recorded] = field(default_factory=list)
    # (method, path) -> a response, or a function of the request returning one
    overrides: dict[tuple[str, str], Any] = field(default_factory=dict)
    # called after each answered request (lets a test move tasks forward while the CLI polls)
    on_request: Callable[[Recorded], None] | None = None
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # --- state helpers -------------------------------------------------------------------

    def add_service(
        self, name: str, spec: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any]:
        ident = extra.pop("ID", f"{name}id{'0' * 20}"[:25])
        full = {
            "Name": name,
            "Labels": {},
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest"}, "ForceUpdate": 0},
            "Mode": {"Replicated": {"Replicas": 1}},
            "EndpointSpec": {"Mode": "vip"},
        }
        full.update(spec or {})
        service = {"ID": ident, "Version": {"Index": 10}, "Spec": full, **extra}
        self.services[ident] = service
        return service

    def add_node(self, ident: str, hostname: str, **extra: Any) -> dict[str, Any]:
        node = {
            "ID": ident,
            "Version": {"Index": 5},
            "Spec": {"Role": "worker", "Availability": "active", "Labels": {}},
            "Description": {"Hostname": hostname, "Engine": {"EngineVersion": "0.1.0"}},
            "Status": {"State": "ready", "Addr": "198.18.0.11"},
            **extra,
        }
        self.nodes.append(node)
        return node

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    # --- HTTP ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, content: bytes, headers: dict[str, str]) -> Reply:
        url = urlsplit(target)
        rec = Recorded(
            method,
            url.path.removeprefix("/v1.47"),
            dict(parse_qsl(url.query)),
            json.loads(content) if content else None,
            {k.lower(): v for k, v in headers.items()},
        )
        self.requests.append(rec)
        override = self.overrides.get((rec.method, rec.path))
        if override is not None:
            response = override(rec) if callable(override) else override
        else:
            response = self.route(rec)
        if self.on_request is not None:
            self.on_request(rec)
        return response

    def route(self, rec: Recorded) -> Reply:
        parts = rec.path.strip("/").split("/")
        kind = parts[0]
        if rec.method == "GET" and rec.path == "/info":
            return _json(200, self.info)
        if rec.method == "GET" and rec.path == "/version":
            return _json(200, {"Version": "0.1.0", "ApiVersion": "1.47", "MinAPIVersion": "1.24",
                               "Os": "linux", "Arch": "amd64"})  # fmt: skip
        if kind == "swarm":
            return self._swarm(rec, parts)
        if kind == "services":
            return self._services(rec, parts)
        if kind == "tasks":
            return self._tasks(rec, parts)
        if kind == "nodes":
            return self._nodes(rec, parts)
        return _error(404, "page not found")

    def _swarm(self, rec: Recorded, parts: list[str]) -> Reply:
        if rec.method == "GET" and len(parts) == 1:
            return _json(200, self.swarm)
        if parts[1:] == ["init"]:
            return _json(200, "node1id")
        return Reply(200)

    def _find(
        self,
        objects: list[dict[str, Any]],
        ref: str,
        kind: str,
        name: Callable[[dict[str, Any]], str],
    ) -> dict[str, Any] | Reply:
        for match in (
            lambda o: o["ID"] == ref,
            lambda o: name(o) == ref,
            lambda o: o["ID"].startswith(ref),
        ):
            found = [o for o in objects if match(o)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                return _error(400, f"{kind} {ref} is ambiguous ({len(found)} matches found)")
        return _error(404, f"{kind} {ref} not found")

    def _services(self, rec: Recorded, parts: list[str]) -> Reply:
        if rec.method == "POST" and parts[1:] == ["create"]:
            ident = f"svc{next(self._ids):022d}"
            self.services[ident] = {"ID": ident, "Version": {"Index": 1}, "Spec": rec.body}
            return _json(201, {"ID": ident})
        if rec.method == "GET" and len(parts) == 1:
            found = list(self.services.values())
            filters = json.loads(rec.params.get("filters", "{}"))
            if "id" in filters:
                found = [s for s in found if any(s["ID"].startswith(i) for i in filters["id"])]
            if "name" in filters:
                found = [s for s in found if s["Spec"].get("Name") in filters["name"]]
            return _json(200, found)
        service = self._find(
            list(self.services.values()), parts[1], "service", lambda s: s["Spec"].get("Name", "")
        )
        if isinstance(service, Reply):
            return service
        if rec.method == "GET" and parts[2:] == ["logs"]:
            return Reply(200, content=self.logs, chunked=True)
        if rec.method == "GET":
            return _json(200, service)
        if rec.method == "DELETE":
            del self.services[service["ID"]]
            return Reply(200)
        if rec.method == "POST" and parts[2:] == ["update"]:
            if int(rec.params.get("version", -1)) != service["Version"]["Index"]:
                return _error(500, "rpc error: code = Unknown desc = update out of sequence")
            service["PreviousSpec"] = service["Spec"]
            service["Spec"] = rec.body
            service["Version"] = {"Index": service["Version"]["Index"] + 1}
            return _json(200, {"Warnings": None})
        return _error(404, "page not found")

    def _tasks(self, rec: Recorded, parts: list[str]) -> Reply:
        if len(parts) == 2:
            found = self._find(self.tasks, parts[1], "task", lambda t: "")
            return found if isinstance(found, Reply) else _json(200, found)
        filters = json.loads(rec.params.get("filters", "{}"))
        tasks = self.tasks
        if "service" in filters:
            tasks = [t for t in tasks if t.get("ServiceID") in filters["service"]]
        if "node" in filters:
            tasks = [t for t in tasks if t.get("NodeID") in filters["node"]]
        if "desired-state" in filters:
            tasks = [t for t in tasks if t.get("DesiredState") in filters["desired-state"]]
        return _json(200, tasks)

    def _nodes(self, rec: Recorded, parts: list[str]) -> Reply:
        if rec.method == "GET" and len(parts) == 1:
            return _json(200, self.nodes)
        node = self._find(self.nodes, parts[1], "node", lambda n: n["Description"]["Hostname"])
        if isinstance(node, Reply):
            return node
        if rec.method == "GET":
            return _json(200, node)
        if rec.method == "DELETE":
            self.nodes.remove(node)
            return Reply(200)
        if rec.method == "POST" and parts[2:] == ["update"]:
            node["Spec"] = rec.body
            node["Version"] = {"Index": node["Version"]["Index"] + 1}
            return Reply(200)
        return _error(404, "page not found")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        content = self.rfile.read(length) if length else b""
        try:
            reply = self.server.fake.handle(self.command, self.path, content, dict(self.headers))
        except Hangup:
            self.close_connection = True
            return
        except Exception as exc:  # a bug of the fake: fail the test, not the CLI only
            self.server.errors.append(exc)
            reply = _error(599, f"fake daemon failed: {exc!r}")
        body = reply.body()
        self.send_response(reply.status)
        if reply.json is not None:
            self.send_header("Content-Type", "application/json")
        if reply.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 7):  # small chunks: frames arrive split
                piece = body[i : i + 7]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if reply.status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _serve


class _Server(ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, fake: FakeDaemon) -> None:
        self.fake = fake
        self.errors: list[Exception] = []
        super().__init__(path, _Handler)


@contextmanager
def serve(daemon: FakeDaemon) -> Iterator[str]:
    """The fake daemon on a unix socket, for the duration; yields its `unix://` host."""
    folder = tempfile.mkdtemp(prefix="shoal-cli-")  # short: a socket path has 107 bytes
    server = _Server(f"{folder}/api.sock", daemon)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"unix://{folder}/api.sock"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
    if server.errors:
        raise server.errors[0]


@dataclass
class FakeClock:
    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    limit: float = 600.0  # fake seconds: a CLI that waits longer has a bug (fail, not hang)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if sum(self.slept) > self.limit:
            raise AssertionError(f"the CLI waited more than {self.limit} s of fake time")


@dataclass
class Shoal:
    """Runs `shoal ...` in-process against the fake daemon."""

    daemon: FakeDaemon
    clock: FakeClock
    host: str
    tty: bool = False
    width: int = 200
    environ: dict[str, str] = field(default_factory=lambda: {"SHOAL_CONVERGE_MONITOR": "0"})

    def context(self) -> CliContext:
        return CliContext(
            client_factory=lambda host: Client(self.host),
            now=lambda: NOW,
            monotonic=self.clock.monotonic,
            sleep=self.clock.sleep,
            isatty=lambda: self.tty,
            term_width=lambda: self.width,
            environ=self.environ,
        )

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(cli, list(args), obj=self.context(), catch_exceptions=False)
