"""The per-task shim (containerd-shim style): `run(task dir)` in a child the runtime's zygote
forked (`zygote.py`), or `python -S -m shoal.agent.exec.shim <task dir>` on its own.

It outlives the daemon and the zygote (own session, stdio detached after the handshake),
so a restarted daemon adopts the task by watching the shim. Stdlib only: the zygote that
imports it starts in a few tens of milliseconds, once per runtime.

Handshake with the runtime over the shim's stdin/stdout, one line each:
    shim -> "netns <host|local>"   it unshared a new netns and pinned it (config's netns path)
    runtime -> "go"                the runtime plugged the veth into it
    shim -> "pid <pid> <start>"    the program runs (its pid file was written before exec)
    shim -> "error <message>"      instead of either of the above; the shim then exits 1

The program runs in the shim's netns, in a new UTS namespace with the task's hostname, in
its own session and process group, stdin /dev/null, stdout/stderr through pipes into the
JSON-lines log. SIGTERM to the shim is forwarded to the program's process group. When the
program exits, what is left of its process group is killed (a container's processes die
with its init), the pipes are drained, and `exit` is written; then the shim exits.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys
import time

from shoal.agent.exec import nsutil, taskdir
from shoal.agent.exec.taskdir import ProcRef, read_json, rfc3339_nano, write_json_atomic

# `typing` costs the shim ~8 ms of start-up; mypy honours a TYPE_CHECKING of our own
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

__all__ = ["main"]

MAX_LINE = 16 * 1024  # Docker splits longer lines too
DRAIN_AFTER_EXIT = 1.0  # seconds to read what the program's last processes wrote
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


class StartFailed(Exception):
    pass


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _child(cfg: dict[str, Any], go: tuple[int, int], out_w: int, err_w: int, exc_w: int) -> None:
    """In the forked child: set up, wait for the pid file, exec. Never returns."""
    go_r, go_w = go
    try:
        os.close(go_w)
        os.setsid()
        for sig in _RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.read(go_r, 1)  # returns at EOF: the shim has recorded our pid
        os.closerange(3, exc_w)
        os.closerange(exc_w + 1, 65536)  # exc_w itself is close-on-exec
        cwd = cfg["cwd"]
        try:
            os.chdir(cwd)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise StartFailed(
                f'chdir to cwd ("{cwd}") set in config.json failed: {reason}'
            ) from None
        try:
            os.execve(cfg["path"], cfg["argv"], cfg["env"])
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise StartFailed(f'exec: "{cfg["argv"][0]}": {reason}') from None
    except BaseException as exc:  # anything at all: report it, never return into the shim
        msg = str(exc) if isinstance(exc, StartFailed) else f"{type(exc).__name__}: {exc}"
        try:
            os.write(exc_w, msg.encode(errors="replace"))
        finally:
            os._exit(127)


class _Files:
    """The task directory's files, as strings (see taskdir: no pathlib in the shim)."""

    def __init__(self, root: str) -> None:
        join = os.path.join
        self.config, self.netns = join(root, taskdir.CONFIG), join(root, taskdir.NETNS)
        self.pid, self.exit = join(root, taskdir.PID), join(root, taskdir.EXIT)
        self.log = join(root, taskdir.LOG)


def _spawn(cfg: dict[str, Any], files: _Files) -> tuple[ProcRef, int, int]:
    """Fork the program; returns it and the read ends of its stdout and stderr pipes."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    go_r, go_w = os.pipe()
    exc_r, exc_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        _child(cfg, (go_r, go_w), out_w, err_w, exc_w)
    for fd in (out_w, err_w, go_r, exc_w):
        os.close(fd)
    ref = ProcRef.of(pid) or ProcRef(pid, 0)
    ref.save(files.pid)
    os.close(go_w)
    chunks = []
    while chunk := os.read(exc_r, 4096):
        chunks.append(chunk)
    os.close(exc_r)
    if chunks:
        os.waitpid(pid, 0)
        try:
            os.unlink(files.pid)
        except FileNotFoundError:
            pass
        raise StartFailed(b"".join(chunks).decode(errors="replace"))
    return ref, out_r, err_r


class _Log:
    """Appends one JSON object per line, flushed per line so `logs -f` sees it at once."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._partial = {"stdout": b"", "stderr": b""}

    def _emit(self, stream: str, raw: bytes) -> None:
        entry = {
            "time": rfc3339_nano(time.time_ns()),
            "stream": stream,
            "log": raw.decode(errors="replace"),
        }
        self._fh.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
        self._fh.flush()

    def feed(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream] + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            self._emit(stream, line)
        while len(rest) >= MAX_LINE:
            self._emit(stream, rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._partial[stream] = rest

    def close_stream(self, stream: str) -> None:
        if self._partial[stream]:
            self._emit(stream, self._partial[stream])
        self._partial[stream] = b""


def _supervise(child: ProcRef, out_r: int, err_r: int, log: _Log) -> tuple[int, int | None]:
    """Log the program's output until it exits and its pipes drain; its (code, signal)."""
    reaped = False

    def forward(signum: int, _frame: object) -> None:
        if not reaped:  # unreaped, the pid cannot have been recycled
            try:
                os.killpg(child.pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    sel = selectors.DefaultSelector()
    sel.register(out_r, selectors.EVENT_READ, "stdout")
    sel.register(err_r, selectors.EVENT_READ, "stderr")
    pidfd = os.pidfd_open(child.pid)
    sel.register(pidfd, selectors.EVENT_READ, "exit")
    status: tuple[int, int | None] | None = None
    deadline = 0.0
    while True:
        streams = [k for k in sel.get_map().values() if k.data != "exit"]
        if status is not None and (not streams or time.monotonic() >= deadline):
            break
        timeout = None if status is None else max(0.0, deadline - time.monotonic())
        for key, _ in sel.select(timeout):
            if key.data == "exit":
                try:
                    os.killpg(child.pid, signal.SIGKILL)  # leftovers of the group, pre-reap
                except ProcessLookupError:
                    pass
                _, wstatus = os.waitpid(child.pid, 0)
                reaped = True
                sel.unregister(pidfd)
                os.close(pidfd)
                sig = os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None
                status = (128 + sig if sig else os.waitstatus_to_exitcode(wstatus), sig)
                deadline = time.monotonic() + DRAIN_AFTER_EXIT
                continue
            data = os.read(key.fd, 65536)
            if data:
                log.feed(key.data, data)
            else:
                sel.unregister(key.fd)
                os.close(key.fd)
                log.close_stream(key.data)
    for stream in ("stdout", "stderr"):
        log.close_stream(stream)
    assert status is not None
    return status


def _detach_stdio() -> None:
    """After the handshake: the daemon may die, and a pipe to it must not kill us."""
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def _read_go() -> bool:
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(0, 64)
        if not chunk:
            return False
        line += chunk
    return line.strip() == b"go"


def run(task_dir: str) -> int:
    files = _Files(task_dir)
    cfg = read_json(files.config)
    if not isinstance(cfg, dict):
        _say(f"error cannot read {files.config}")
        return 1
    try:
        where = nsutil.pin_new_netns(cfg["netns_path"], cfg.get("host_mntns"))
    except OSError as exc:
        _say(f"error creating network namespace: {exc}")
        return 1
    try:
        with open(files.netns, "w") as fh:
            fh.write(where)
        _say(f"netns {where}")
        go = _read_go()
    except OSError:  # the task dir or the runtime's pipe is gone
        go = False
    if not go:
        # the runtime gave up (a handshake timeout on a loaded node) and cleaned up, maybe
        # before this pin existed: remove it here too (idempotent), or it would outlive us
        host_mntns = cfg.get("host_mntns") if where == "host" else None
        try:
            nsutil.unpin_netns(cfg["netns_path"], host_mntns)
        except OSError:
            pass
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with open(files.log, "ab") as fh:
        try:
            nsutil.set_hostname_in_new_uts(cfg["hostname"])
            child, out_r, err_r = _spawn(cfg, files)
        except (StartFailed, OSError) as exc:
            _say(f"error {exc}")
            return 1
        _say(f"pid {child.pid} {child.start}")
        _detach_stdio()
        # from here on a failure leaves no exit file; the runtime then watches the program
        code, sig = _supervise(child, out_r, err_r, _Log(fh))
    write_json_atomic(
        files.exit, {"code": code, "signal": sig, "finished": rfc3339_nano(time.time_ns())}
    )
    return 0


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: python -m shoal.agent.exec.shim <task dir>", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(sys.argv[1]))


if __name__ == "__main__":
    main()
