"""The container endpoints' handle on the node's runtime: `app[CONTAINERS_KEY]` (set by the
server) and `containers_of(request)`; the contract itself lives in `shoal.api.taskcontainers`,
below both the agent that implements it and the API that uses it."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from shoal.api.taskcontainers import (
    ContainerView,
    ExecOptions,
    NetworkAttachment,
    NoSuchContainer,
    TaskContainers,
    resolve,
    runc_exec_argv,
)

__all__ = [
    "CONTAINERS_KEY",
    "ContainerView",
    "ExecOptions",
    "NetworkAttachment",
    "NoSuchContainer",
    "TaskContainers",
    "containers_of",
    "resolve",
    "runc_exec_argv",
]


CONTAINERS_KEY = web.AppKey("task_containers", TaskContainers)


class _NoContainers:
    def containers(self) -> Sequence[ContainerView]:
        return ()

    def exec_argv(self, container_id: str, opts: ExecOptions) -> list[str]:
        raise NoSuchContainer(container_id)

    async def signal(self, container_id: str, signum: int) -> None:
        raise NoSuchContainer(container_id)

    async def remove(self, container_id: str) -> None:
        raise NoSuchContainer(container_id)


def containers_of(request: web.Request) -> TaskContainers:
    """The node's task containers (none until the runtime registers them)."""
    found = request.app.get(CONTAINERS_KEY)
    return found if found is not None else _NoContainers()


