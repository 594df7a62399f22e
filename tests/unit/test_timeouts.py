"""`shoal.timeouts.wait_for`: a deadline that never drops the caller's cancellation."""

from __future__ import annotations

import asyncio

import pytest

from shoal import timeouts


async def test_a_cancellation_in_the_turn_the_awaited_finishes_goes_through() -> None:
    # 3.11's asyncio.wait_for returns the result here and the task carries on uncancelled
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    after: list[str] = []

    async def waiter() -> None:
        await timeouts.wait_for(fut, 10)
        after.append("ran on after the cancel")

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # the task now waits on fut
    fut.set_result(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert after == []


async def test_the_deadline_raises_timeout_and_cancels_the_awaited() -> None:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await timeouts.wait_for(fut, 0.01)
    assert fut.cancelled()


async def test_the_result_and_errors_come_back_as_awaited() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        raise ValueError("bad")

    assert await timeouts.wait_for(answer(), 5) == 42
    assert await timeouts.wait_for(answer(), None) == 42
    with pytest.raises(ValueError, match="bad"):
        await timeouts.wait_for(fail(), 5)
