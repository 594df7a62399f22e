"""What shoal's two HTTP/1.1 clients share (the CLI's `shoal.client`, blocking sockets; the
leader's `shoal.httpapi.twin_http`, asyncio streams): the status line, interim answers, how
an answer's body is framed (RFC 9112 section 6.3) and which texts could split a request.
Pure functions on what was read; standard library only (the CLI imports this)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["body_framing", "is_interim", "status_of", "unsafe"]


def unsafe(text: str) -> bool:
    """True if `text` could end a request line or header early (CR, LF, NUL)."""
    return "\r" in text or "\n" in text or "\0" in text


def status_of(line: bytes) -> tuple[str, int] | None:
    """(HTTP version, status) of a status line; None when it is not one."""
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code = rest.partition(" ")[0]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        return None
    return version, int(code)


def is_interim(status: int) -> bool:
    """100 Continue, 102, 103: an interim answer, the real one follows (101 is final)."""
    return 100 <= status < 200 and status != 101


def body_framing(
    method: str, version: str, status: int, headers: Mapping[str, str]
) -> tuple[int | None, bool, bool]:
    """(length, chunked, the connection ends with this answer) of an answer whose headers
    have lower-case names; length None with chunked False: the body runs until the
    connection's end. ValueError for a bad Content-Length."""
    connection = headers.get("connection", "").lower()
    closes = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return 0, False, closes
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None, True, closes
    if "content-length" in headers:
        raw = headers["content-length"]
        try:
            length = int(raw.split(",")[0])
        except ValueError:
            raise ValueError(f"bad Content-Length {raw!r}") from None
        if length < 0:
            raise ValueError(f"bad Content-Length {raw!r}")
        return length, False, closes
    return None, False, True
