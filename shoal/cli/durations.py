"""Go-style durations and times, as the docker CLI reads and prints them: pure.

`parse_duration` follows Go's `time.ParseDuration` (`1m30s`, `500ms`, `1.5h`, `-2s`, `0`),
returning integer nanoseconds (the unit of every duration in the Engine API JSON).
`format_duration` is Go's `Duration.String()`, `human_duration` is go-units'
`HumanDuration` (what `docker service ps` prints as "5 seconds ago"), `parse_time` reads the
RFC 3339 timestamps (with nanoseconds) the API returns.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["format_duration", "human_duration", "parse_duration", "parse_time"]

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # Go accepts both micro signs (U+00B5 and U+03BC)
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_MAX = (1 << 63) - 1


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration string; ValueError with Go's message when invalid."""
    orig = text
    invalid = ValueError(f'time: invalid duration "{orig}"')
    neg = text[:1] == "-"
    if text[:1] in "+-" and text:
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise invalid
    total = 0
    while text:
        if not (text[0] == "." or text[0].isdigit()):
            raise invalid
        match = _TERM.match(text)
        assert match is not None  # the pattern matches any string
        whole, frac, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not frac:
            raise invalid
        if not unit:
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        scale = _UNITS[unit]
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        if total > _MAX:
            raise invalid
        text = text[match.end() :]
    return -total if neg else total


def _frac(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")


def format_duration(ns: int) -> str:
    """Go's `time.Duration.String()`: 0s, 500ms, 5s, 1m30s, 1h0m0s."""
    if ns == 0:
        return "0s"
    u = abs(ns)
    if u < 1_000:
        text = f"{u}ns"
    elif u < 1_000_000:
        text = _frac(u, 1_000) + "µs"
    elif u < 1_000_000_000:
        text = _frac(u, 1_000_000) + "ms"
    else:
        secs, rest = divmod(u, 1_000_000_000)
        text = str(secs % 60)
        if rest:
            text += f".{rest:09d}".rstrip("0")
        text += "s"
        mins = secs // 60
        if mins:
            text = f"{mins % 60}m{text}"
            if mins // 60:
                text = f"{mins // 60}h{text}"
    return "-" + text if ns < 0 else text


def human_duration(seconds: float) -> str:
    """go-units `HumanDuration`: "Less than a second", "5 seconds", "About a minute", ..."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


_TIME = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def parse_time(stamp: str) -> datetime | None:
    """An aware datetime from an RFC 3339 (nano) timestamp, or None if empty/unreadable."""
    match = _TIME.match(stamp.strip()) if stamp else None
    if match is None:
        return None
    base, frac, zone = match.groups()
    micro = f".{(frac or '0')[:6]:0<6}"
    offset = "+00:00" if zone in (None, "Z") else zone
    try:
        parsed = datetime.fromisoformat(base.replace(" ", "T") + micro + offset)
    except ValueError:
        return None
    return parsed.astimezone(UTC)
