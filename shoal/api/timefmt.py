"""RFC 3339 timestamps (Docker's JSON time format) to and from epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["from_epoch", "now_rfc3339", "to_epoch"]


def to_epoch(stamp: str) -> float:
    if not stamp:
        return 0.0
    text = stamp.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def from_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339() -> str:
    """The current UTC time in Docker's JSON time format (nanosecond-style fraction)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
