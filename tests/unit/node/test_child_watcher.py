"""The daemon's loop watches child processes by pidfd (no thread per child)."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest

from shoal.daemon import _pidfd_child_watcher


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ asyncio needs no watcher")
def test_children_are_watched_without_a_thread_each() -> None:
    policy = asyncio.get_event_loop_policy()
    before = policy.get_child_watcher()  # type: ignore[attr-defined]

    async def main() -> tuple[list[int | None], int]:
        _pidfd_child_watcher(asyncio.get_running_loop())
        threads = threading.active_count()
        procs = [await asyncio.create_subprocess_exec("true") for _ in range(5)]
        peak = threading.active_count()
        codes = [await p.wait() for p in procs]
        bad = await asyncio.create_subprocess_exec("sh", "-c", "exit 3")
        codes.append(await bad.wait())
        return codes, peak - threads

    try:
        codes, extra_threads = asyncio.run(main())
        assert type(policy.get_child_watcher()).__name__ == "PidfdChildWatcher"  # type: ignore[attr-defined]
    finally:
        policy.set_child_watcher(before)  # type: ignore[attr-defined]
    assert codes == [0, 0, 0, 0, 0, 3]
    assert extra_threads == 0
