"""The node's reading of a log subscription: tail per task, since, the streams asked, batches
under the size limit, and while following new lines and tasks added later."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from shoal.agent.log_publisher import MAX_BATCH_BYTES, SubscriptionReader, chunks
from shoal.cluster.wire import LogEntry, LogSubscription
from tests.polling import eventually


def write(path: Path, *lines: tuple[int, str, str]) -> None:
    with path.open("a") as fh:
        for second, stream, text in lines:
            fh.write(json.dumps({"time": f"2026-01-01T00:00:{second:02d}.000000000Z",
                                 "stream": stream, "log": text}) + "\n")


async def collect(reader: SubscriptionReader) -> list[tuple[str, str]]:
    return [(e.task_id, e.text) async for batch in reader.batches() for e in batch]


async def test_tail_per_task_since_and_streams(tmp_path: Path) -> None:
    write(tmp_path / "a", (1, "stdout", "a1"), (3, "stderr", "a3"), (5, "stdout", "a5"))
    write(tmp_path / "b", (2, "stdout", "b2"), (4, "stdout", "b4"))
    path = lambda t: tmp_path / t  # noqa: E731
    everything = SubscriptionReader(LogSubscription("s", ["a", "b", "gone"]), path)
    assert await collect(everything) == [("a", "a1"), ("b", "b2"), ("a", "a3"), ("b", "b4"),
                                         ("a", "a5")]  # fmt: skip
    tail = SubscriptionReader(LogSubscription("s", ["a", "b"], tail=1), path)
    assert await collect(tail) == [("b", "b4"), ("a", "a5")]
    since = 1767225600 + 3  # 2026-01-01T00:00:03Z
    late = SubscriptionReader(LogSubscription("s", ["a", "b"], since=since), path)
    assert await collect(late) == [("a", "a3"), ("b", "b4"), ("a", "a5")]
    errors = SubscriptionReader(LogSubscription("s", ["a", "b"], streams=["stderr"]), path)
    assert await collect(errors) == [("a", "a3")]


def test_batches_stay_under_the_limit() -> None:
    entries = [LogEntry("t", "2026-01-01T00:00:00Z", "stdout", "x" * 1000) for _ in range(1000)]
    batches = list(chunks(entries))
    assert sum(len(b) for b in batches) == 1000 and len(batches) > 1
    assert all(sum(len(e.text) for e in b) <= MAX_BATCH_BYTES + 1000 for b in batches)


async def test_follow_sees_new_lines_and_added_tasks(tmp_path: Path) -> None:
    write(tmp_path / "a", (0, "stdout", "older"), (1, "stdout", "old"))
    reader = SubscriptionReader(LogSubscription("s", ["a"], follow=True, tail=1),
                                lambda t: tmp_path / t, poll=0.02)
    got: list[tuple[str, str]] = []

    async def consume() -> None:
        async for batch in reader.batches():
            got.extend((e.task_id, e.text) for e in batch)

    consumer = asyncio.ensure_future(consume())
    try:
        await eventually(lambda: got == [("a", "old")])  # the last line before, then:
        write(tmp_path / "a", (2, "stdout", "new"))
        await eventually(lambda: got == [("a", "old"), ("a", "new")])
        write(tmp_path / "b", (3, "stdout", "b from the start"))
        reader.add(["b"])  # a new task: its lines from the start, whatever the tail
        await eventually(lambda: got == [("a", "old"), ("a", "new"), ("b", "b from the start")])
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
