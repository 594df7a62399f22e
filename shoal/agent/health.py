"""Health checks of tasks (Docker's HEALTHCHECK semantics), and where they run.

A task with a health check is `starting` until its first successful check; only then is it
`running` and in the mesh. After that, `retries` consecutive failures make it unhealthy:
the agent takes it out of the mesh, stops it and reports it failed, and the restart policy
replaces it. Failures during `start_period` do not count. Defaults are Docker's (30 s
interval, 30 s timeout, 3 retries). The monitor reads no clock of its own: time and the
check runner are injected, so tests drive it directly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shoal import timeouts
from shoal.api.types import HealthConfig, Task

__all__ = [
    "HealthMonitor", "HealthSpec", "health_spec", "netns_checker", "run_check", "run_in_netns",
]

SECOND = 1_000_000_000


@dataclass(frozen=True)
class HealthSpec:
    argv: list[str]
    interval: float
    timeout: float
    retries: int
    start_period: float


def health_spec(hc: HealthConfig | None) -> HealthSpec | None:
    """What to run and when, or None when the task has no (or a disabled) health check."""
    if hc is None or not hc.test or hc.test[0] == "NONE":
        return None
    kind, rest = hc.test[0], hc.test[1:]
    if kind == "CMD-SHELL":
        argv = ["/bin/sh", "-c", " ".join(rest)]
    elif kind == "CMD":
        argv = list(rest)
    else:  # Docker also takes a bare command list
        argv = list(hc.test)
    if not argv:
        return None
    return HealthSpec(
        argv=argv,
        interval=(hc.interval or 30 * SECOND) / SECOND,
        timeout=(hc.timeout or 30 * SECOND) / SECOND,
        retries=hc.retries or 3,
        start_period=hc.start_period / SECOND,
    )


class HealthMonitor:
    def __init__(
        self,
        spec: HealthSpec,
        check: Callable[[list[str], float], Awaitable[bool]],
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.spec = spec
        self._check = check
        self._clock = clock
        self._sleep = sleep
        self._started = clock()
        self.failures = 0
        self.last_output = ""

    async def _probe(self) -> bool:
        ok = await self._check(self.spec.argv, self.spec.timeout)
        in_start_period = self._clock() - self._started < self.spec.start_period
        if ok:
            self.failures = 0
        elif not in_start_period:
            self.failures += 1
        return ok

    async def wait_healthy(self) -> bool:
        """True at the first passing check; False once the task is unhealthy first."""
        while True:
            if await self._probe():
                return True
            if self.failures >= self.spec.retries:
                return False
            await self._sleep(self.spec.interval)

    async def wait_unhealthy(self) -> None:
        """Return once `retries` consecutive checks have failed."""
        while True:
            await self._sleep(self.spec.interval)
            if not await self._probe() and self.failures >= self.spec.retries:
                return


async def run_in_netns(
    netns_path: str, env: dict[str, str], argv: list[str], timeout: float
) -> bool:
    """Run a check in the task's network namespace; passes on exit status 0 within timeout."""
    return await run_check(
        ["nsenter", f"--net={netns_path}", "--", *argv], timeout, {**os.environ, **env}
    )


async def run_check(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> bool:
    """Run a health check process: passes on exit status 0 within `timeout`; killed (and
    failed) past it. `runc exec` forwards the kill to the process in the container."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return False
    try:
        return await timeouts.wait_for(proc.wait(), timeout) == 0
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False


def netns_checker(
    netns_path: Callable[[str], str], env_of: Callable[[Task], dict[str, str]]
) -> Callable[[Task, list[str], float], Awaitable[bool]]:
    """The node's check runner: a task's checks run in its netns with its environment."""

    async def check(task: Task, argv: list[str], timeout: float) -> bool:
        return await run_in_netns(netns_path(task.id), env_of(task), argv, timeout)

    return check
