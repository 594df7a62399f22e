"""Waiting for processes that may not be our children, and reading how a task ended.

A process is watched through a pidfd (readable once it exits, whoever its parent is), so a
daemon that restarted waits for shims it did not spawn exactly like for those it did.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shoal.agent.exec.taskdir import ProcRef, read_json

__all__ = ["ExitStatus", "read_exit", "wait_gone"]


@dataclass(frozen=True)
class ExitStatus:
    """How a task's program ended: `code` is 128+signal for signal deaths, -1 unknown."""

    code: int
    message: str


UNKNOWN = ExitStatus(-1, "task exited (status unknown)")


def read_exit(path: Path) -> ExitStatus | None:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("code"), int):
        return None
    sig = data.get("signal")
    if isinstance(sig, int) and sig:
        return ExitStatus(data["code"], f"task killed by signal {sig}")
    return ExitStatus(data["code"], f"task exited with code {data['code']}")


async def wait_gone(ref: ProcRef, child: subprocess.Popen[bytes] | None = None) -> None:
    """Return once `ref` has exited; reap it when it is our child (`child`)."""
    try:
        try:
            pidfd = os.pidfd_open(ref.pid)
        except ProcessLookupError:
            return
        try:
            # checked after opening: a live process with the recorded start time is the
            # recorded one, so the pidfd cannot be pinning a recycled pid
            if not ref.alive():
                return
            loop = asyncio.get_running_loop()
            exited = loop.create_future()
            loop.add_reader(pidfd, _resolver(exited))
            try:
                await exited
            finally:
                loop.remove_reader(pidfd)
        finally:
            os.close(pidfd)
    finally:
        if child is not None:
            child.poll()


def _resolver(fut: asyncio.Future[None]) -> Callable[[], None]:
    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    return resolve
