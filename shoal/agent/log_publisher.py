"""A node's side of `service logs`: the log subscriptions the leader's broker hands it.

The node listens (`LogBroker/ListenSubscriptions`, a server stream on the same 2377
connection as its session); for each subscription it reads its tasks' JSON-lines logs with
the local reader (shoal.agent.exec.logs: tail per task, since, follow) and publishes the
lines in batches on a client stream of its own (`LogBroker/PublishLogs`), then a `close`
marker when it is not following. A subscription sent again while following brings more
tasks (a new task of the service on this node); `close` from the leader (its client went
away) stops the publishing. A manager that does not know the calls (an older one) answers
Unimplemented: the node then simply publishes nothing (its lines are missing there).

`SubscriptionReader` is the reading half alone: the leader reads its own tasks with it
in-process (shoal.manager.logbroker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

from shoal.agent.exec.logs import LogLine, follow, read_logs
from shoal.cluster.client import ClusterClient
from shoal.cluster.wire import Empty, LogEntry, LogSubscription, PublishLogsRequest
from shoal.errors import ShoalError

__all__ = ["MAX_BATCH_BYTES", "LogPublisher", "SubscriptionReader", "chunks"]

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 256 * 1024  # of line text per PublishLogs message (far below MAX_MESSAGE)
MAX_BATCH_LINES = 2000
MAX_LINE = 64 * 1024  # a longer line is cut (docker's own limit is 16 KiB per message part)


def _entry(task_id: str, line: LogLine) -> LogEntry:
    return LogEntry(task_id, line.time, line.stream, line.text[:MAX_LINE])


def chunks(entries: Iterable[LogEntry]) -> Iterator[list[LogEntry]]:
    """Batches of at most MAX_BATCH_LINES lines and about MAX_BATCH_BYTES of text."""
    batch: list[LogEntry] = []
    size = 0
    for entry in entries:
        batch.append(entry)
        size += len(entry.text) + len(entry.time) + 24
        if len(batch) >= MAX_BATCH_LINES or size >= MAX_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class SubscriptionReader:
    """The lines of a subscription's tasks on this node, in batches."""

    def __init__(
        self, sub: LogSubscription, log_path: Callable[[str], Path], poll: float = 0.2
    ) -> None:
        self.sub = sub
        self._log_path = log_path
        self._poll = poll
        self._tail = None if sub.tail < 0 else sub.tail
        self._since = sub.since or None
        self._want = set(sub.streams) or {"stdout", "stderr"}
        self._tasks: list[str] = list(dict.fromkeys(sub.tasks))
        self._queue: asyncio.Queue[LogEntry] = asyncio.Queue(maxsize=MAX_BATCH_LINES)
        self._pumps: dict[str, asyncio.Task[None]] = {}

    def add(self, task_ids: Iterable[str]) -> None:
        """More tasks while following (new tasks of the service): every line they wrote
        (`tail` is about the lines before the command, `since` still holds)."""
        for task_id in task_ids:
            if task_id not in self._tasks:
                self._tasks.append(task_id)
                if self._pumps:
                    self._start(task_id, from_start=True)

    async def batches(self) -> AsyncIterator[list[LogEntry]]:
        if not self.sub.follow:
            entries = [
                _entry(task_id, line)
                for task_id in self._tasks
                for line in read_logs(self._log_path(task_id), self._tail, self._since)
                if line.stream in self._want
            ]
            entries.sort(key=lambda e: e.time)
            for batch in chunks(entries):
                yield batch
            return
        for task_id in self._tasks:
            self._start(task_id)
        try:
            while True:
                first = await self._queue.get()
                taken = [first]
                while not self._queue.empty() and len(taken) < MAX_BATCH_LINES:
                    taken.append(self._queue.get_nowait())
                for batch in chunks(taken):
                    yield batch
        finally:
            pumps = list(self._pumps.values())
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    def _start(self, task_id: str, from_start: bool = False) -> None:
        if task_id in self._pumps:
            return
        tail = None if from_start else self._tail

        async def pump() -> None:
            path = self._log_path(task_id)
            async for line in follow(path, tail, self._since, poll=self._poll):
                if line.stream in self._want:
                    await self._queue.put(_entry(task_id, line))

        self._pumps[task_id] = asyncio.create_task(pump(), name=f"logs-{task_id[:12]}")


class LogPublisher:
    """Serves the leader's log subscriptions for this node's tasks over one client."""

    def __init__(self, log_path: Callable[[str], Path], poll: float = 0.2) -> None:
        self._log_path = log_path
        self._poll = poll
        self.running: dict[str, tuple[asyncio.Task[None], SubscriptionReader]] = {}

    async def serve(self, client: ClusterClient) -> None:
        """Until the subscription stream ends (the session's manager went away or is not
        the leader any more); an older manager (Unimplemented) returns at once."""
        try:
            async for sub in client.stream(
                "LogBroker/ListenSubscriptions", Empty(), LogSubscription
            ):
                self._take(client, sub)
        except ShoalError as exc:
            log.info("logs: subscriptions from %s ended: %s", client.addr, exc.message)
        finally:
            running = [task for task, _ in self.running.values()]
            self.running.clear()
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _take(self, client: ClusterClient, sub: LogSubscription) -> None:
        known = self.running.get(sub.id)
        if sub.close:
            if known is not None:
                del self.running[sub.id]
                known[0].cancel()
            return
        if known is not None:
            known[1].add(sub.tasks)
            return
        reader = SubscriptionReader(sub, self._log_path, self._poll)
        task = asyncio.create_task(self._publish(client, reader), name=f"logs-{sub.id[:8]}")
        self.running[sub.id] = (task, reader)

        def forget(done: asyncio.Task[None], sub_id: str = sub.id) -> None:
            if self.running.get(sub_id, (None,))[0] is done:
                del self.running[sub_id]

        task.add_done_callback(forget)

    async def _publish(self, client: ClusterClient, reader: SubscriptionReader) -> None:
        sub_id = reader.sub.id
        out = client.client_stream("LogBroker/PublishLogs", Empty)
        finished = False
        try:
            async for batch in reader.batches():
                await out.write(PublishLogsRequest(sub_id, batch))
            await out.write(PublishLogsRequest(sub_id, close=True))
            await out.done_writing()
            finished = True  # the call ends when the broker has taken every message
        except ShoalError as exc:
            log.info("logs: publishing subscription %s ended: %s", sub_id, exc.message)
        finally:
            if not finished:
                with contextlib.suppress(Exception):
                    out.cancel()
