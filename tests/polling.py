"""The one way tests wait: poll a condition until it holds or a deadline passes.

`until` is for blocking code (lab tests drive other processes); `eventually` for asyncio
tests, and also awaits a check that returns an awaitable. Both return the first truthy value
of `check` and raise `AssertionError` naming `what` (or the check) when the deadline passes.
Exceptions listed in `retry_on` count as "not yet" (a lab peer that is still restarting).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

__all__ = ["eventually", "until"]

_NONE: tuple[type[BaseException], ...] = ()


def _fail(timeout: float, what: str, check: Callable[[], Any]) -> AssertionError:
    return AssertionError(f"condition not met within {timeout}s: {what or check}")


def until(
    check: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "",
    *,
    interval: float = 0.1,
    retry_on: tuple[type[BaseException], ...] = _NONE,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except retry_on:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise _fail(timeout, what, check)
        time.sleep(interval)


async def eventually(
    check: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "",
    *,
    interval: float = 0.02,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise _fail(timeout, what, check)
        await asyncio.sleep(interval)
