"""Futures of requests in flight in the driver: proposals and ReadIndex reads.

A proposal is known by the (index, term) its entry got in the leader's log. It succeeds
when that entry is applied; it fails with `NotLeader` when another entry is applied at
its index (overwritten by a new leader's log) or when leadership is lost before it is
applied: it may then still be committed by the next leader, so the caller cannot know
(an ambiguous failure, like a timeout).

A read is known by its unique context; it waits first for the ReadState that carries
its read index, then for the local applied index to reach it.
"""

from __future__ import annotations

import asyncio

from shoal.errors import ShoalError
from shoal.manager.raft.errors import NotLeader

__all__ = ["Proposals", "Reads"]


def _settle(fut: asyncio.Future[int], result: int | ShoalError) -> None:
    if fut.done():
        return  # the caller gave up (cancelled or timed out)
    if isinstance(result, ShoalError):
        fut.set_exception(result)
    else:
        fut.set_result(result)


class Proposals:
    def __init__(self) -> None:
        self._by_index: dict[int, tuple[int, asyncio.Future[int]]] = {}

    def __len__(self) -> int:
        return len(self._by_index)

    def add(self, index: int, term: int, fut: asyncio.Future[int]) -> None:
        self._by_index[index] = (term, fut)

    def applied(self, index: int, term: int) -> None:
        got = self._by_index.pop(index, None)
        if got is None:
            return
        want, fut = got
        if want == term:
            _settle(fut, index)
        else:
            _settle(fut, NotLeader(f"raft: entry {index} was overwritten by a new leader"))

    def fail_upto(self, index: int, error: ShoalError) -> None:
        for i in [i for i in self._by_index if i <= index]:
            _settle(self._by_index.pop(i)[1], error)

    def fail_all(self, error: ShoalError) -> None:
        pending, self._by_index = self._by_index, {}
        for _, fut in pending.values():
            _settle(fut, error)


class Reads:
    def __init__(self) -> None:
        self._requested: dict[bytes, asyncio.Future[int]] = {}
        self._waiting: list[tuple[int, asyncio.Future[int]]] = []

    def add(self, ctx: bytes, fut: asyncio.Future[int]) -> None:
        self._requested[ctx] = fut

    def discard(self, ctx: bytes) -> None:
        self._requested.pop(ctx, None)

    def fail(self, ctx: bytes, error: ShoalError) -> None:
        fut = self._requested.pop(ctx, None)
        if fut is not None:
            _settle(fut, error)

    def released(self, ctx: bytes, index: int) -> None:
        fut = self._requested.pop(ctx, None)
        if fut is not None:
            self._waiting.append((index, fut))

    def applied(self, applied: int) -> None:
        if not self._waiting:
            return
        still = []
        for index, fut in self._waiting:
            if index <= applied:
                _settle(fut, index)
            else:
                still.append((index, fut))
        self._waiting = still

    def fail_requested(self, error: ShoalError) -> None:
        """Leadership changed: requests not yet released will not be (the caller retries);
        released ones only wait for the local apply and stay valid."""
        pending, self._requested = self._requested, {}
        for fut in pending.values():
            _settle(fut, error)

    def fail_all(self, error: ShoalError) -> None:
        self.fail_requested(error)
        waiting, self._waiting = self._waiting, []
        for _, fut in waiting:
            _settle(fut, error)
