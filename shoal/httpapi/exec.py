"""`docker exec` for task containers: exec instances, their start over a hijacked
connection, pty resize and the exit code.

Start with `Upgrade: tcp` answers `101 UPGRADED` and the connection then carries the
process's I/O: raw bytes both ways with a TTY, otherwise Docker's multiplexed frames out
(8-byte headers, 1 = stdout, 2 = stderr) and raw stdin in. The client half-closes when
its stdin ends; the process's stdin is closed then and its output still flows. The exit code
is recorded before the connection closes, so the CLI's `GET /exec/{id}/json` finds it.
The connection's socket is duplicated out of aiohttp (which closes on a half-close).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shoal.errors import Conflict, InvalidArgument, NotFound
from shoal.httpapi.common import json_response, query_int, route
from shoal.httpapi.exechijack import bridge_pipes, bridge_pty, set_window
from shoal.httpapi.logs import frame
from shoal.httpapi.taskcontainers import ExecOptions, containers_of, resolve

__all__ = ["EXECS_KEY", "ExecInstance", "add_routes", "prepare_app"]


@dataclass
class ExecInstance:
    id: str
    container_id: str
    opts: ExecOptions
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    console_size: tuple[int, int] | None = None
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    pty_master: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


EXECS_KEY = web.AppKey("execs", dict[str, ExecInstance])


def prepare_app(app: web.Application) -> None:
    """The app's table of exec instances (before the app starts)."""
    app[EXECS_KEY] = {}


def _execs(request: web.Request) -> dict[str, ExecInstance]:
    return request.app[EXECS_KEY]


def _strings(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid {key}: expected a list of strings")
    return tuple(value)


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidArgument("invalid JSON body") from None
    if not isinstance(body, dict):
        raise InvalidArgument("invalid body: expected a JSON object")
    return body


def _console_size(body: dict[str, Any]) -> tuple[int, int] | None:
    size = body.get("ConsoleSize")
    if size is None:
        return None
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and v >= 0 for v in size)):
        raise InvalidArgument("invalid ConsoleSize: expected [height, width]")
    return size[0], size[1]


async def create_exec(request: web.Request) -> web.StreamResponse:
    view = resolve(containers_of(request).containers(), request.match_info["id"])
    body = await _json_body(request)
    argv = _strings(body, "Cmd")
    if not argv:
        raise InvalidArgument("No exec command specified")
    if not view.running:
        raise Conflict(f"container {view.id} is not running")
    opts = ExecOptions(
        argv=argv, tty=bool(body.get("Tty")), env=_strings(body, "Env"),
        user=str(body.get("User") or ""), working_dir=str(body.get("WorkingDir") or ""),
    )
    instance = ExecInstance(
        id=secrets.token_hex(32), container_id=view.id, opts=opts,
        attach_stdin=bool(body.get("AttachStdin")),
        attach_stdout=bool(body.get("AttachStdout")),
        attach_stderr=bool(body.get("AttachStderr")),
        console_size=_console_size(body),
    )
    _execs(request)[instance.id] = instance
    return json_response({"Id": instance.id}, status=201)


def _instance(request: web.Request) -> ExecInstance:
    exec_id = request.match_info["id"]
    found = _execs(request).get(exec_id)
    if found is None:
        raise NotFound(f"No such exec instance: {exec_id}")
    return found


async def start_exec(request: web.Request) -> web.StreamResponse:
    instance = _instance(request)
    body = await _json_body(request)
    if instance.started:
        raise Conflict(f"Error: Exec command {instance.id} is already running")
    views = containers_of(request).containers()
    view = next((v for v in views if v.id == instance.container_id), None)
    if view is None or not view.running:
        raise Conflict(f"container {instance.container_id} is not running")
    failure = ""
    try:
        argv = containers_of(request).exec_argv(view.id, instance.opts)
    except InvalidArgument as exc:  # an unknown `-u` user: dockerd says it on the stream, 126
        argv, failure = [], exc.message
    instance.started = instance.running = True
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    if failure and (body.get("Detach") or not upgrade):
        instance.exit_code, instance.running = 126, False
        return web.Response(status=200)
    if body.get("Detach") or not upgrade:
        asyncio.get_running_loop().create_task(_run_detached(instance, argv))
        return web.Response(status=200)
    return await _hijack(request, instance, argv, failure)


async def _run_detached(instance: ExecInstance, argv: list[str]) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        instance.pid = proc.pid
        instance.exit_code = await proc.wait()
    except OSError:
        instance.exit_code = 126
    finally:
        instance.running = False


def _upgraded_head(raw_tty: bool) -> bytes:
    kind = "raw-stream" if raw_tty else "multiplexed-stream"
    return (
        "HTTP/1.1 101 UPGRADED\r\n"
        f"Content-Type: application/vnd.docker.{kind}\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    ).encode()


async def _hijack(
    request: web.Request, instance: ExecInstance, argv: list[str], failure: str = ""
) -> web.StreamResponse:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if transport is None or sock is None:
        raise InvalidArgument("the connection cannot be hijacked")
    transport.pause_reading()
    own = socket.socket(fileno=os.dup(sock.fileno()))
    reader, writer = await asyncio.open_connection(sock=own)
    try:
        writer.write(_upgraded_head(instance.opts.tty))
        await writer.drain()
        if failure:
            line = (failure + "\n").encode()
            writer.write(line if instance.opts.tty else frame(2, line))
            await writer.drain()
            instance.exit_code = 126
        elif instance.opts.tty:
            instance.exit_code = await bridge_pty(instance, argv, reader, writer)
        else:
            instance.exit_code = await bridge_pipes(instance, argv, reader, writer)
    finally:
        instance.running = False
        instance.pty_master = None
        if not writer.is_closing():
            if writer.can_write_eof():
                writer.write_eof()
            writer.close()
        transport.close()
    return web.Response(status=204)


async def resize_exec(request: web.Request) -> web.StreamResponse:
    instance = _instance(request)
    height, width = query_int(request, "h") or 0, query_int(request, "w") or 0
    if not instance.running:
        raise Conflict(f"Exec {instance.id} is not running")
    if instance.pty_master is not None:
        set_window(instance.pty_master, height, width)
        if instance.pid:
            os.kill(instance.pid, signal.SIGWINCH)  # runc forwards its tty's size inside
    return web.Response(status=200)


async def inspect_exec(request: web.Request) -> web.StreamResponse:
    i = _instance(request)
    return json_response({
        "ID": i.id,
        "Running": i.running,
        "ExitCode": i.exit_code,
        "ProcessConfig": {
            "tty": i.opts.tty, "entrypoint": i.opts.argv[0],
            "arguments": list(i.opts.argv[1:]), "privileged": False, "user": i.opts.user,
        },
        "OpenStdin": i.attach_stdin,
        "OpenStderr": i.attach_stderr,
        "OpenStdout": i.attach_stdout,
        "CanRemove": not i.running and i.started,
        "ContainerID": i.container_id,
        "DetachKeys": "",
        "Pid": i.pid,
    })


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "POST", "/containers/{id}/exec", create_exec)
    route(router, "POST", "/exec/{id}/start", start_exec)
    route(router, "POST", "/exec/{id}/resize", resize_exec)
    route(router, "GET", "/exec/{id}/json", inspect_exec)
