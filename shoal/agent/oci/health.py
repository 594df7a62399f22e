"""Health checks of container tasks: the check runs inside the container (`runc exec`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shoal.agent.exec.runtime import ExecRuntime
from shoal.agent.health import run_check
from shoal.agent.oci.runtime import OciRuntime
from shoal.api.types import Task

__all__ = ["container_checker", "run_in_container"]

Checker = Callable[[Task, list[str], float], Awaitable[bool]]


async def run_in_container(
    runtime: OciRuntime, task_id: str, argv: list[str], timeout: float
) -> bool:
    """Passes on exit status 0 within `timeout`; the exec'd process is killed on timeout."""
    return await run_check(runtime.exec_argv(task_id, argv), timeout)


def container_checker(runtime: ExecRuntime, host_checker: Checker) -> Checker:
    """Container tasks are checked inside the container, exec tasks by `host_checker`."""

    async def check(task: Task, argv: list[str], timeout: float) -> bool:
        if isinstance(runtime, OciRuntime) and runtime.is_container(task.id):
            return await run_in_container(runtime, task.id, argv, timeout)
        return await host_checker(task, argv, timeout)

    return check
