"""Long-lived HTTP/1.1 keep-alive connections for the lab load (`shoal.lab.load --keepalive`).

`per_target` persistent connections are opened to every target; each sends `GET /` every
`interval` seconds on the same connection for the whole run. What happens to them is
counted apart from the new-connection load:

- `ok`: a request answered 2xx on its connection;
- `reconnects`: the server answered with `Connection: close` (a graceful close, what a
  draining whoami does) and the client opened a new connection: not a failure;
- `idle_closes`: the server closed the connection while it was idle (seen before the next
  request was sent, so nothing was lost); the client reconnects: not a failure either;
- `failed`: a request sent on a connection that got no complete answer (reset, EOF,
  timeout, bad status) or a connect that failed; `resets` is the part of those where the
  established connection broke under a request (reset or EOF), not a connect failure.

Summary (one dict): {"connections", "requests", "ok", "failed", "resets", "reconnects",
"idle_closes", "answers", "failures": [[t, target, error], ...] (first 200)}.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from shoal import timeouts
from shoal.lab.httpread import read_body

__all__ = ["KeepAliveStats", "keepalive_worker"]

MAX_FAILURES_KEPT = 200


@dataclass
class KeepAliveStats:
    start: float
    connections: int = 0
    ok: int = 0
    failed: int = 0
    resets: int = 0
    reconnects: int = 0
    idle_closes: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[float, str, str]] = field(default_factory=list)

    def fail(self, target: str, now: float, error: str, reset: bool) -> None:
        self.failed += 1
        self.resets += int(reset)
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append((round(now - self.start, 3), target, error))

    def summary(self) -> dict[str, object]:
        return {
            "connections": self.connections,
            "requests": self.ok + self.failed,
            "ok": self.ok,
            "failed": self.failed,
            "resets": self.resets,
            "reconnects": self.reconnects,
            "idle_closes": self.idle_closes,
            "answers": dict(self.answers),
            "failures": self.failures,
        }


@dataclass
class _Answer:
    status: str
    close: bool
    hostname: str | None


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
) -> _Answer:
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode(errors="replace")
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    body = (await read_body(reader, head)).decode(errors="replace")
    hostname = next((ln.split(":", 1)[1].strip() for ln in body.splitlines()
                     if ln.lower().startswith("hostname:")), None)
    status = lines[0].split(" ", 2)
    return _Answer(status[1] if len(status) > 1 else "", headers.get("connection") == "close",
                   hostname)


async def keepalive_worker(
    target: str, stats: KeepAliveStats, stop: asyncio.Event, interval: float, timeout: float
) -> None:
    """One persistent connection to `target`, a request every `interval` until `stop`."""
    loop = asyncio.get_running_loop()
    host, _, port = target.rpartition(":")
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while not stop.is_set():
        if conn is not None and conn[0].at_eof():  # closed while idle: nothing was sent
            stats.idle_closes += 1
            _close(conn)
            conn = None
        if conn is None:
            try:
                async with asyncio.timeout(timeout):
                    conn = await asyncio.open_connection(host, int(port))
                stats.connections += 1
            except (OSError, TimeoutError) as exc:
                stats.fail(target, loop.time(), f"connect: {type(exc).__name__}: {exc}", False)
                await _pause(stop, interval)
                continue
        try:
            async with asyncio.timeout(timeout):
                answer = await _exchange(*conn, host)
        except (OSError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError) as exc:
            reset = not isinstance(exc, TimeoutError)
            stats.fail(target, loop.time(), f"{type(exc).__name__}: {exc}", reset)
            _close(conn)
            conn = None
        else:
            if answer.status.startswith("2"):
                stats.ok += 1
                stats.answers[answer.hostname or "?"] += 1
            else:
                stats.fail(target, loop.time(), f"bad answer: {answer.status}", False)
            if answer.close:
                stats.reconnects += 1
                _close(conn)
                conn = None
        await _pause(stop, interval)
    if conn is not None:
        _close(conn)


def _close(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    conn[1].close()


async def _pause(stop: asyncio.Event, interval: float) -> None:
    try:
        await timeouts.wait_for(stop.wait(), interval)
    except TimeoutError:
        pass
