"""The shim zygote: `python -S -m shoal.agent.exec.zygote`, one per runtime, forks shims.

A shim started as its own `python -S -m shoal.agent.exec.shim` pays an interpreter start
and its imports (~30 ms of CPU each; a 300-task burst spent a quarter of the machine on
them). The zygote pays them once: it imports the shim's module and then, for each task,
forks a child that runs `shim.run` exactly as a separately started shim would, in its own
session, with the stdio the runtime handed over. What the shim does is unchanged, so is
how the runtime watches it (a pidfd on its pid) and how a restarted daemon adopts it.

Protocol, over the AF_UNIX SOCK_SEQPACKET socket that is the zygote's stdin, one request
in flight at a time (the runtime serializes them), fields separated by newlines:
    runtime -> b"shim\n<task dir>"  with three fds (SCM_RIGHTS): the shim's stdin, stdout
                                    and stderr
    zygote  -> b"pid <pid>"         the shim runs (its handshake goes over its own stdio)
    runtime -> b"unpin\n<netns pin path>\n<host mount ns path>"
    zygote  -> b"done"              a forked child removed the pin (`nsutil.unpin_netns`:
                                    it enters the host mount namespace, which only a
                                    single-threaded process may, so never the daemon)
    zygote  -> b"error <message>"   to either: nothing was started, or the pin is still there
End of file on the socket (the daemon closed it, or died) ends the zygote. Its shims live
on: they are in sessions of their own, and when their parent is gone the kernel hands them
to init (or the nearest subreaper), which reaps them. While the zygote lives it reaps every
child on SIGCHLD, so no finished shim stays a zombie that would look alive.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys

from shoal.agent.exec import nsutil, shim

__all__ = ["FDS_PER_REQUEST", "MAX_MESSAGE", "main"]

FDS_PER_REQUEST = 3
MAX_MESSAGE = 8192
_FD_BYTES = FDS_PER_REQUEST * 4  # sizeof(int) per fd in SCM_RIGHTS


def _received_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds.extend(int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, usable, 4))
    return fds


def _run_shim(task_dir: str, fds: list[int], keep_closed: list[int]) -> None:
    """In the forked child: become the shim of `task_dir`. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in keep_closed:
            os.close(fd)
        os.setsid()
        nsutil.set_comm("shoal-shim")
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        code = shim.run(task_dir)
    except BaseException as exc:  # the shim's own errors are its words; this is ours
        try:
            os.write(2, f"zygote child: {type(exc).__name__}: {exc}\n".encode(errors="replace"))
        except OSError:
            pass
    finally:
        os._exit(code)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _serve(sock: socket.socket, wake_r: int, wake_w: int) -> None:
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN)
    poller.register(wake_r, select.EPOLLIN)
    try:
        while True:
            for fd, _ in poller.poll():
                if fd == wake_r:
                    try:
                        while os.read(wake_r, 256):
                            pass
                    except BlockingIOError:
                        pass
                    _reap()
                    continue
                msg, ancdata, _, _ = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(_FD_BYTES))
                fds = _received_fds(ancdata)
                if not msg:
                    for fd in fds:
                        os.close(fd)
                    return  # the runtime is gone
                _answer(sock, msg, fds, [poller.fileno(), sock.fileno(), wake_r, wake_w])
    finally:
        poller.close()


def _answer(sock: socket.socket, msg: bytes, fds: list[int], own: list[int]) -> None:
    try:
        word, *args = msg.decode(errors="replace").split("\n")
        if word == "shim" and len(args) == 1 and args[0] and len(fds) == FDS_PER_REQUEST:
            answer = _fork_shim(args[0], fds, own)
        elif word == "unpin" and len(args) == 2 and args[0] and not fds:
            answer = _unpin(args[0], args[1] or None, own)
        else:
            answer = f"error bad request {msg[:64]!r} with {len(fds)} fds"
        sock.send(answer.encode(errors="replace"))
    finally:
        for fd in fds:
            os.close(fd)


def _fork_shim(task_dir: str, fds: list[int], own: list[int]) -> str:
    try:
        pid = os.fork()
    except OSError as exc:
        return f"error fork: {exc}"
    if pid == 0:
        _run_shim(task_dir, fds, own)
    return f"pid {pid}"


def _unpin(path: str, host_mntns: str | None, own: list[int]) -> str:
    """Remove a netns pin in a forked child (it changes mount namespace, we must not)."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(err_r)
        os.close(err_w)
        return f"error fork: {exc}"
    if pid == 0:
        code = 1
        try:
            os.close(err_r)
            for fd in own:
                os.close(fd)
            nsutil.unpin_netns(path, host_mntns)
            code = 0
        except BaseException as exc:
            os.write(err_w, str(exc).encode(errors="replace"))
        finally:
            os._exit(code)
    os.close(err_w)
    chunks = []
    while chunk := os.read(err_r, 4096):  # until the child exits (end of file)
        chunks.append(chunk)
    os.close(err_r)
    _, status = os.waitpid(pid, 0)  # ours alone: _reap runs only between requests
    if os.waitstatus_to_exitcode(status) == 0:
        return "done"
    return "error " + (b"".join(chunks).decode(errors="replace") or f"unpin of {path} failed")


def main() -> None:
    try:
        sock = socket.socket(fileno=os.dup(0))  # a close-on-exec copy; fd 0 becomes null
    except OSError as exc:
        print(f"zygote: stdin is not the runtime's socket: {exc}", file=sys.stderr)
        sys.exit(2)
    if sock.type != socket.SOCK_SEQPACKET:
        print("zygote: stdin must be an AF_UNIX SOCK_SEQPACKET socket", file=sys.stderr)
        sys.exit(2)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    nsutil.set_comm("shoal-zygote")
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _serve(sock, wake_r, wake_w)


if __name__ == "__main__":
    main()
