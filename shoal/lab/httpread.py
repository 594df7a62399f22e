"""Reading an HTTP/1.1 answer's body in the lab's load clients (new-connection and keep-alive).

With Content-Length: that many bytes. Without it (a CGI's answer through busybox httpd, which
closes the connection after it): up to the end of the stream. At most 1 MiB either way.
"""

from __future__ import annotations

import asyncio

__all__ = ["MAX_BODY", "content_length", "read_body"]

MAX_BODY = 1 << 20


def content_length(head: str) -> int | None:
    """The Content-Length of a response head (status line and headers), or None."""
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            return min(int(value), MAX_BODY)
    return None


async def read_body(reader: asyncio.StreamReader, head: str) -> bytes:
    length = content_length(head)
    if length is not None:
        return await reader.readexactly(length)
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY:
        chunk = await reader.read(MAX_BODY - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
