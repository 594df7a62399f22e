"""The runtime's side of the shim handshake: lines over the shim's stdin/stdout pipes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from shoal import timeouts

__all__ = ["Handshake", "ShimGone"]


class ShimGone(Exception):
    """The shim closed its side or said something unexpected."""


class Handshake:
    """Reads newline-terminated words from `read_fd` (made non-blocking), writes to `write_fd`."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._buf = b""
        os.set_blocking(read_fd, False)

    async def _readable(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(self._read_fd, _resolver(ready))
        try:
            await timeouts.wait_for(ready, timeout)
        except TimeoutError:
            raise TimeoutError("the shim did not answer in time") from None
        finally:
            loop.remove_reader(self._read_fd)

    async def line(self, timeout: float) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("the shim did not answer in time")
            await self._readable(remaining)
            try:
                chunk = os.read(self._read_fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                raise ShimGone("the shim exited during start (see shim.log)")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\n")
        return raw.decode(errors="replace").strip()

    def send(self, word: str) -> None:
        # a few bytes into an empty pipe: never blocks
        os.write(self._write_fd, word.encode() + b"\n")


def _resolver(fut: asyncio.Future[None]) -> Callable[[], None]:
    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    return resolve
