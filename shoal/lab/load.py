"""A steady request load from the lab client, counting every failure and when it happened.

    python -m shoal.lab.load http|udp ADDR:PORT... [--concurrency 8] [--duration 60]
        [--timeout 2] [--interval 0.01] [--keepalive 0] [--keepalive-interval 0.05]

Each of `concurrency` workers sends one request at a time (HTTP: a new connection per
request, closed by the client once it has read the answer, so that the TIME_WAIT is the
client's and a reused client port never meets a server's TIME_WAIT; UDP: a new socket per
datagram) to the targets in turn, pausing `interval` seconds between requests. It stops
after `duration` seconds or when its standard input closes (how tests stop it), then
prints one JSON line:

    {"total", "ok", "failed", "seconds", "by_target": {target: [ok, failed]},
     "answers": {hostname: count}, "failures": [[t, target, error], ...] (first 200),
     "first_failure", "last_failure"}   # t: seconds since the start

With `--keepalive N` (HTTP), N long-lived keep-alive connections per target run beside
the new-connection workers, a request every `--keepalive-interval` seconds each; their
counts come under "keepalive" (see shoal.lab.keepalive), apart from the figures above.

Answers are told apart by the `hostname:` line whoami puts first in its reply. Requests go
only to the targets given (lab addresses); each is bounded by `timeout`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections import Counter
from dataclasses import dataclass, field

from shoal import timeouts
from shoal.lab.httpread import read_body
from shoal.lab.keepalive import KeepAliveStats, keepalive_worker

__all__ = ["LoadStats", "main"]

MAX_FAILURES_KEPT = 200


@dataclass
class LoadStats:
    start: float
    ok: int = 0
    failed: int = 0
    by_target: dict[str, list[int]] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[float, str, str]] = field(default_factory=list)
    first_failure: float | None = None
    last_failure: float | None = None

    def record(self, target: str, now: float, answer: str | None, error: str | None) -> None:
        counts = self.by_target.setdefault(target, [0, 0])
        if error is None:
            self.ok += 1
            counts[0] += 1
            self.answers[answer or "?"] += 1
            return
        t = round(now - self.start, 3)
        self.failed += 1
        counts[1] += 1
        if self.first_failure is None:
            self.first_failure = t
        self.last_failure = t
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append((t, target, error))

    def summary(self, now: float) -> dict[str, object]:
        return {
            "total": self.ok + self.failed,
            "ok": self.ok,
            "failed": self.failed,
            "seconds": round(now - self.start, 3),
            "by_target": self.by_target,
            "answers": dict(self.answers),
            "failures": self.failures,
            "first_failure": self.first_failure,
            "last_failure": self.last_failure,
        }


def _hostname(body: str) -> str | None:
    for line in body.splitlines():
        if line.lower().startswith("hostname:"):
            return line.split(":", 1)[1].strip()
    return None


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host, int(port)


async def http_once(target: str, timeout: float) -> tuple[str | None, str | None]:
    host, port = _split(target)
    writer = None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode(errors="replace")
            body = (await read_body(reader, head)).decode(errors="replace")
    except TimeoutError:
        return None, f"timeout (source port {_port_of(sock)})"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        detail = getattr(exc, "strerror", None) or exc
        return None, f"{type(exc).__name__}: {detail} (source port {_port_of(sock)})"
    finally:
        if writer is not None:
            writer.close()  # the client closes first: the TIME_WAIT stays on its side
        else:
            sock.close()
    status = head.split(" ", 2)
    if len(status) < 2 or not status[1].startswith("2"):
        return None, f"bad answer: {head.splitlines()[0] if head else 'empty'}"
    return _hostname(body), None


def _port_of(sock: socket.socket) -> int:
    """The source port a connect gave `sock` (known from the first SYN on), or 0."""
    try:
        return int(sock.getsockname()[1])
    except OSError:
        return 0


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def udp_once(target: str, timeout: float) -> tuple[str | None, str | None]:
    loop = asyncio.get_running_loop()
    transport = None
    try:
        transport, proto = await loop.create_datagram_endpoint(
            _Udp, remote_addr=_split(target), family=socket.AF_INET
        )
        transport.sendto(b"hello")
        async with asyncio.timeout(timeout):
            data = await proto.answer
    except TimeoutError:
        return None, "timeout"
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc.strerror or exc}"
    finally:
        if transport is not None:
            transport.close()
    return _hostname(data.decode(errors="replace")), None


async def run(
    proto: str, targets: list[str], concurrency: int, duration: float, timeout: float,
    interval: float, keepalive: int = 0, keepalive_interval: float = 0.05,
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    stats = LoadStats(start=loop.time())
    kept = KeepAliveStats(start=stats.start)
    stop = asyncio.Event()
    once = http_once if proto == "http" else udp_once

    async def worker(offset: int) -> None:
        i = offset
        while not stop.is_set():
            target = targets[i % len(targets)]
            i += 1
            answer, error = await once(target, timeout)
            stats.record(target, loop.time(), answer, error)
            if interval:
                await asyncio.sleep(interval)

    def on_stdin() -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            stop.set()

    fd = sys.stdin.fileno()
    try:
        loop.add_reader(fd, on_stdin)
        watching = True
    except (OSError, ValueError):  # not a pipe (e.g. /dev/null): run for `duration`
        watching = False
    workers = [asyncio.ensure_future(worker(n)) for n in range(concurrency)]
    workers += [
        asyncio.ensure_future(keepalive_worker(t, kept, stop, keepalive_interval, timeout))
        for t in (targets if proto == "http" else []) for _ in range(keepalive)
    ]
    try:
        await timeouts.wait_for(stop.wait(), duration)
    except TimeoutError:
        stop.set()
    await asyncio.gather(*workers)
    if watching:
        loop.remove_reader(fd)
    summary = stats.summary(loop.time())
    if keepalive:
        summary["keepalive"] = kept.summary()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shoal.lab.load")
    parser.add_argument("proto", choices=["http", "udp"])
    parser.add_argument("targets", nargs="+", metavar="ADDR:PORT")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--keepalive", type=int, default=0, metavar="N",
                        help="N long-lived keep-alive connections per target (http)")
    parser.add_argument("--keepalive-interval", type=float, default=0.05)
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be 1..256")
    if not 0 < args.duration <= 3600:
        parser.error("--duration must be within (0, 3600] seconds")
    if not 0 <= args.keepalive <= 64:
        parser.error("--keepalive must be 0..64")
    if args.keepalive and args.proto != "http":
        parser.error("--keepalive needs http")
    if not 0.001 <= args.keepalive_interval <= 60:
        parser.error("--keepalive-interval must be within [0.001, 60] seconds")
    summary = asyncio.run(
        run(args.proto, args.targets, args.concurrency, args.duration, args.timeout,
            args.interval, args.keepalive, args.keepalive_interval)
    )
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
