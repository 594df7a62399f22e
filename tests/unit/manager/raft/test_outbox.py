"""The outbox holds commit-only appends briefly: a later append to the same peer takes
their place, else they go out after the delay; nothing else waits, order is kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shoal.manager.raft.outbox import Outbox
from shoal.raft import Entry, Message, MessageType
from tests.polling import eventually


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def bind(self, reporter: object) -> None:
        pass

    async def send(self, to: int, messages: list[Message]) -> None:
        self.sent.extend(messages)


def _app(to: int, commit: int, *entries: int) -> Message:
    return Message(
        MessageType.APP, to=to, from_=1, term=1, index=commit, commit=commit,
        entries=tuple(Entry(term=1, index=i) for i in entries),
    )


async def _outbox(delay: float) -> AsyncIterator[tuple[Outbox, Recorder]]:
    rec = Recorder()
    async for outbox in _outbox_with(rec, delay):
        yield outbox, rec


@pytest.fixture
async def slow() -> AsyncIterator[tuple[Outbox, Recorder]]:
    async for pair in _outbox(3600.0):  # held ones never come out by time in these tests
        yield pair


async def test_a_later_append_takes_the_place_of_a_held_commit_only_one(slow) -> None:  # type: ignore[no-untyped-def]
    outbox, rec = slow
    outbox.put(_app(2, 5))  # commit-only: held
    outbox.put(_app(3, 5))  # another peer: held on its own
    hb = Message(MessageType.HEARTBEAT, to=2, from_=1, term=1, commit=5)
    outbox.put(hb)  # not an append: sent at once, the held one stays
    await eventually(lambda: rec.sent == [hb])
    assert outbox.held == 2
    outbox.put(_app(2, 5, 6))  # carries entries (and the commit index): sent, replaces
    outbox.put(_app(2, 6))
    outbox.put(_app(2, 7))  # a newer commit-only one replaces the held one
    await eventually(lambda: len(rec.sent) == 2)
    assert [m.entries[0].index for m in rec.sent[1:]] == [6]
    assert outbox.held == 2  # peer 2's commit 7, peer 3's commit 5


@pytest.fixture
async def quick() -> AsyncIterator[tuple[Outbox, Recorder]]:
    async for pair in _outbox(0.01):
        yield pair


@pytest.fixture
async def undelayed() -> AsyncIterator[tuple[Outbox, Recorder]]:
    async for pair in _outbox(0.0):
        yield pair


async def test_a_held_commit_only_append_goes_out_after_the_delay(quick) -> None:  # type: ignore[no-untyped-def]
    outbox, rec = quick
    outbox.put(_app(2, 5))
    outbox.put(_app(2, 6))  # replaces it, on the first one's timer
    await eventually(lambda: rec.sent, timeout=10)
    assert [(m.type, m.commit, m.entries) for m in rec.sent] == [(MessageType.APP, 6, ())]
    assert outbox.held == 0


async def test_without_a_delay_nothing_is_held(undelayed) -> None:  # type: ignore[no-untyped-def]
    outbox, rec = undelayed
    outbox.put(_app(2, 5))
    await eventually(lambda: len(rec.sent) == 1)
    assert outbox.held == 0


class WritesAtOnce(Recorder):
    """A transport that can write without waiting while `ready` (like a framed connection
    with room in its buffer); `send` holds each call until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = True
        self.now: list[list[Message]] = []
        self.queued: list[list[Message]] = []
        self.release = asyncio.Event()
        self.release.set()

    def send_now(self, to: int, messages: list[Message]) -> bool:
        if not self.ready:
            return False
        self.now.append(list(messages))
        self.sent.extend(messages)
        return True

    async def send(self, to: int, messages: list[Message]) -> None:
        self.queued.append(list(messages))
        await self.release.wait()
        await super().send(to, messages)


async def test_an_idle_peers_messages_are_written_at_flush_in_one_envelope() -> None:
    rec = WritesAtOnce()
    gen = _outbox_with(rec)
    outbox = await anext(gen)
    try:
        outbox.put(_app(2, 1, 1))
        outbox.put(_app(2, 2, 2))
        assert rec.sent == []  # nothing before the round's flush
        outbox.flush()
        assert [[m.index for m in b] for b in rec.now] == [[1, 2]]
        assert rec.queued == []
    finally:
        await gen.aclose()


async def test_declined_or_behind_a_send_in_flight_messages_queue_in_order() -> None:
    rec = WritesAtOnce()
    gen = _outbox_with(rec)
    outbox = await anext(gen)
    try:
        rec.ready, rec.release = False, asyncio.Event()
        outbox.put(_app(2, 1, 1))
        outbox.flush()  # declined: queued for the sender, which now waits in `send`
        await eventually(lambda: rec.queued == [[_app(2, 1, 1)]], 5, "the queued send")
        rec.ready = True
        outbox.put(_app(2, 2, 2))  # a send is in flight: not written ahead of it
        outbox.flush()
        assert rec.now == []
        rec.release.set()
        await eventually(lambda: [m.index for m in rec.sent] == [1, 2], 5, "both, in order")
    finally:
        await gen.aclose()


async def _outbox_with(rec: Recorder, delay: float = 0.0) -> AsyncIterator[Outbox]:
    outbox = Outbox(1, rec, 64, lambda peer: None, commit_delay=delay)

    class _Done(Exception):
        pass

    async def run(ready: asyncio.Future[None], done: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            outbox.start(tg)
            ready.set_result(None)
            await done.wait()
            raise _Done

    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()
    task = asyncio.create_task(run(ready, done))
    await ready
    try:
        yield outbox
    finally:
        done.set()
        with pytest.raises(ExceptionGroup):
            await task
