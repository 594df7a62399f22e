"""Waiting with a deadline, without losing a cancellation.

Python 3.11's `asyncio.wait_for` returns the awaited result when the caller is cancelled
in the same loop turn as the awaited thing completes: the cancellation is dropped
(CPython gh-86296, fixed in 3.12 by building `wait_for` on `asyncio.timeout`). A loop
that waits with `asyncio.wait_for` can then keep running after its task group cancelled
it, and the group's exit waits forever (the Raft driver's stop hung so under load). The
`asyncio.timeout` context has no such window; `wait_for` here is that, in one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """`await aw`, raising TimeoutError after `timeout` seconds (None: no deadline).

    Unlike 3.11's `asyncio.wait_for`, `aw` runs in the calling task (a coroutine is not
    wrapped in a task of its own) and a cancellation of the caller always goes through."""
    async with asyncio.timeout(timeout):
        return await aw
