"""Reading a task's JSON-lines log (written by its shim): tail, since, follow.

One object per line: {"time": RFC 3339 with nanoseconds, UTC, "stream": "stdout"|"stderr",
"log": text without its newline}. The writer appends whole lines, so only a final line
without its newline can be incomplete; readers leave it for the next read. Lines that do
not parse are skipped (a log must never break `service logs`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from shoal.api.timefmt import to_epoch

__all__ = ["LogLine", "follow", "parse_line", "read_logs"]

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class LogLine:
    time: str
    stream: str
    text: str

    @property
    def epoch(self) -> float:
        return to_epoch(self.time)


def parse_line(raw: bytes) -> LogLine | None:
    try:
        entry = json.loads(raw)
        line = LogLine(entry["time"], entry["stream"], entry["log"])
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(v, str) for v in (line.time, line.stream, line.text)):
        return None
    return line


def _tail_start(path: Path, size: int, tail: int) -> int:
    """Offset where the last `tail` complete lines of the first `size` bytes begin."""
    if tail <= 0:
        return size
    with path.open("rb") as f:
        pos, newlines = size, 0
        while pos > 0:
            step = min(_CHUNK, pos)
            f.seek(pos - step)
            block = f.read(step)
            for i in range(len(block) - 1, -1, -1):
                if block[i] == 0x0A and pos - step + i != size - 1:
                    newlines += 1
                    if newlines == tail:
                        return pos - step + i + 1
            pos -= step
    return 0


def _complete_size(path: Path) -> int:
    """Size of the file up to and including its last newline."""
    size = path.stat().st_size
    with path.open("rb") as f:
        pos = size
        while pos > 0:
            step = min(_CHUNK, pos)
            f.seek(pos - step)
            block = f.read(step)
            idx = block.rfind(b"\n")
            if idx >= 0:
                return pos - step + idx + 1
            pos -= step
    return 0


def _read(path: Path, tail: int | None, since: float | None) -> tuple[list[LogLine], int]:
    """The selected lines and the offset just past the last complete line."""
    try:
        end = _complete_size(path)
    except FileNotFoundError:
        return [], 0
    start = 0 if tail is None else _tail_start(path, end, tail)
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(end - start)
    lines = [p for raw in data.split(b"\n") if raw and (p := parse_line(raw)) is not None]
    if since is not None:
        lines = [ln for ln in lines if ln.epoch >= since]
    return lines, end


def read_logs(path: Path, tail: int | None = None, since: float | None = None) -> list[LogLine]:
    """The log's lines, the last `tail` of them (None: all), those at or after `since`."""
    return _read(path, tail, since)[0]


async def follow(
    path: Path,
    tail: int | None = None,
    since: float | None = None,
    done: Callable[[], bool] | None = None,
    poll: float = 0.1,
) -> AsyncIterator[LogLine]:
    """`read_logs`, then each new line as it is written, until `done()` is true and the
    log holds nothing more (forever when `done` is None: the consumer stops iterating)."""
    lines, offset = _read(path, tail, since)
    for line in lines:
        yield line
    pending = b""
    while True:
        finished = done is not None and done()  # checked before reading: no lost tail
        try:
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        offset += len(data)
        *complete, pending = (pending + data).split(b"\n")
        for raw in complete:
            new = parse_line(raw) if raw else None
            if new is not None and (since is None or new.epoch >= since):
                yield new
        if finished:
            return
        if not data:
            await asyncio.sleep(poll)
