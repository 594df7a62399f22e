"""Task logs: what the shim writes and what `service logs` reads back."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from shoal.agent.exec.logs import LogLine, follow, parse_line, read_logs
from shoal.agent.exec.shim import MAX_LINE, _Log


def _entry(n: int, stream: str = "stdout") -> str:
    return json.dumps(
        {"time": f"2026-01-01T00:00:{n:02d}.000000001Z", "stream": stream, "log": f"l{n}"}
    )


def _write(path: Path, lines: list[str], tail: str = "") -> None:
    path.write_text("".join(line + "\n" for line in lines) + tail)


def test_writer_splits_lines_streams_and_long_lines() -> None:
    buf = io.BytesIO()
    log = _Log(buf)
    log.feed("stdout", b"one\ntw")
    log.feed("stderr", b"err\n")
    log.feed("stdout", b"o\n" + b"x" * (MAX_LINE + 5))
    log.close_stream("stdout")
    got = [json.loads(raw) for raw in buf.getvalue().splitlines()]
    assert [(g["stream"], g["log"]) for g in got] == [
        ("stdout", "one"),
        ("stderr", "err"),
        ("stdout", "two"),
        ("stdout", "x" * MAX_LINE),
        ("stdout", "xxxxx"),
    ]
    assert all(g["time"].endswith("Z") and len(g["time"]) == 30 for g in got)


def test_writer_keeps_invalid_utf8_and_quotes() -> None:
    buf = io.BytesIO()
    log = _Log(buf)
    log.feed("stdout", b'caf\xc3\xa9 "q" \xff\n')
    line = parse_line(buf.getvalue().strip())
    assert line is not None and line.text == 'café "q" \ufffd'


def test_read_tail_since_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    _write(path, [_entry(1), "not json", _entry(2, "stderr"), _entry(3)], tail='{"time": "incompl')
    assert [ln.text for ln in read_logs(path)] == ["l1", "l2", "l3"]
    assert [ln.text for ln in read_logs(path, tail=2)] == ["l2", "l3"]
    assert [ln.text for ln in read_logs(path, tail=3)] == ["l2", "l3"]  # garbage is a line
    assert [ln.text for ln in read_logs(path, tail=0)] == []
    assert [ln.text for ln in read_logs(path, tail=100)] == ["l1", "l2", "l3"]
    since = LogLine("2026-01-01T00:00:02.000000000Z", "", "").epoch
    assert [ln.stream for ln in read_logs(path, since=since)] == ["stderr", "stdout"]
    assert read_logs(tmp_path / "missing") == []


def test_tail_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    _write(path, [_entry(n % 60) for n in range(3000)])  # > 64 KiB
    assert len(read_logs(path, tail=2500)) == 2500
    assert read_logs(path, tail=1)[0].text == f"l{2999 % 60}"


async def test_follow_yields_new_lines_until_done(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    _write(path, [_entry(1), _entry(2)])
    finished = False
    got: list[str] = []

    async def writer() -> None:
        nonlocal finished
        with path.open("a") as fh:
            fh.write(_entry(3)[:10])
            fh.flush()
            await asyncio.sleep(0.05)
            fh.write(_entry(3)[10:] + "\n" + _entry(4) + "\n")
        finished = True

    task = asyncio.create_task(writer())
    async for line in follow(path, tail=1, done=lambda: finished, poll=0.01):
        got.append(line.text)
    await task
    assert got == ["l2", "l3", "l4"]
