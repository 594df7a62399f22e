"""The runtime's side of the shim zygote (`zygote.py`): start it once, ask it for shims.

`ShimZygote.spawn` hands the zygote a task dir and the three fds of the shim's stdio and
returns the new shim's pid. The zygote is started on first use and again after it died
(a request that could not be delivered is retried once on a new zygote); `close` ends it
(end of file on its socket) without touching the shims it forked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys

from shoal import timeouts
from shoal.agent.exec.zygote import MAX_MESSAGE

__all__ = ["ShimZygote", "ZygoteFailed"]

log = logging.getLogger(__name__)

_ANSWER_TIMEOUT = 10.0


class ZygoteFailed(OSError):
    """The zygote could not start a shim (it refused, died or did not answer)."""


class _Delivery(ZygoteFailed):
    """The request never reached a zygote (safe to retry on a new one)."""


class ShimZygote:
    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The running zygote's pid (None before the first spawn or after `close`)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def prestart(self) -> None:
        """Start the zygote now (it imports for a few tens of ms) rather than at the first
        task's start; a failure here is retried by that start."""
        try:
            self._started()
        except OSError as exc:
            log.warning("shim zygote: cannot start it yet: %s", exc)

    async def spawn(self, task_dir: str, stdin: int, stdout: int, stderr: int) -> int:
        """Fork a shim for `task_dir` with the given stdio fds (the caller keeps and closes
        its own copies); returns its pid."""
        answer = await self._request(f"shim\n{task_dir}", (stdin, stdout, stderr))
        word, _, rest = answer.partition(" ")
        if word == "pid" and rest.isdigit():
            return int(rest)
        raise ZygoteFailed(f"the shim zygote refused: {rest or word}")

    async def unpin(self, netns_path: str, host_mntns: str) -> None:
        """Remove a task's netns pin made in the host mount namespace (`nsutil`)."""
        answer = await self._request(f"unpin\n{netns_path}\n{host_mntns}", ())
        if answer != "done":
            raise ZygoteFailed(answer.removeprefix("error "))

    async def _request(self, msg: str, fds: tuple[int, ...]) -> str:
        async with self._lock:
            try:
                return await self._ask(msg.encode(), fds)
            except _Delivery as exc:
                log.warning("shim zygote gone (%s); starting a new one", exc)
                self._stop()
                return await self._ask(msg.encode(), fds)

    async def _ask(self, msg: bytes, fds: tuple[int, ...]) -> str:
        if len(msg) > MAX_MESSAGE or b"\0" in msg:
            raise ZygoteFailed(f"request not fit for the zygote: {msg[:64]!r}")
        sock = self._started()
        try:
            socket.send_fds(sock, [msg], list(fds))
        except BlockingIOError:  # a request at a time: the queue is never full in practice
            raise _Delivery("the zygote's socket is full") from None
        except OSError as exc:
            raise _Delivery(f"sending to the zygote failed: {exc}") from exc
        loop = asyncio.get_running_loop()
        try:
            answer = await timeouts.wait_for(loop.sock_recv(sock, 4096), _ANSWER_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self._stop()
            raise ZygoteFailed(f"the shim zygote did not answer: {exc or 'timed out'}") from exc
        if not answer:
            self._stop()
            raise ZygoteFailed("the shim zygote exited (see the daemon's log)")
        return answer.decode(errors="replace")

    def _started(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with theirs:  # its stderr is the daemon's (it writes there only if it fails)
                self._proc = subprocess.Popen(
                    [sys.executable, "-S", "-m", "shoal.agent.exec.zygote"],
                    stdin=theirs.fileno(),
                    stdout=subprocess.DEVNULL,
                    cwd="/",
                    env=self._env,
                    start_new_session=True,  # no signal for the daemon's group reaches it
                )
        except BaseException:
            ours.close()
            raise
        ours.setblocking(False)
        self._sock = ours
        log.info("shim zygote started: pid %d", self._proc.pid)
        return ours

    def _stop(self) -> None:
        """End the zygote: end of file first (it exits on its own), SIGKILL if it hangs."""
        sock, proc = self._sock, self._proc
        self._sock = self._proc = None
        if sock is not None:
            sock.close()
        if proc is not None and proc.poll() is None:
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # by the Popen's own pid
                proc.wait()

    def close(self) -> None:
        self._stop()
