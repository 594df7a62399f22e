"""What a task runs: its argv and environment, from the task spec (exec runtime rules).

With no imported images, IMAGE names a host program (`busybox`, `python3`); its tag, digest
and registry path are dropped. The image `shoal` runs this shoal installation, so
`shoal whoami` works wherever the daemon runs.
"""

from __future__ import annotations

import sys

from shoal.api.types import Task

__all__ = ["task_argv", "task_env", "task_name"]


def _program(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def task_argv(task: Task) -> list[str]:
    spec = task.spec.container_spec
    assert spec is not None
    args = list(spec.args or [])
    if spec.command:
        return list(spec.command) + args
    program = _program(spec.image)
    if program == "shoal":
        return [sys.executable, "-m", "shoal", *args]
    return [program, *args]


def task_name(task: Task) -> str:
    """`web.1` for a replicated task, `web.<node id>` for a global one (Docker's names)."""
    return f"{task.service_name}.{task.slot if task.slot else task.node_id}"


def task_env(task: Task, node_hostname: str) -> dict[str, str]:
    env: dict[str, str] = {}
    spec = task.spec.container_spec
    for entry in (spec.env if spec else None) or []:
        key, sep, value = entry.partition("=")
        if sep:
            env[key] = value
    env.update(
        SHOAL_TASK_ID=task.id,
        SHOAL_TASK_NAME=task_name(task),
        SHOAL_TASK_SLOT=str(task.slot),
        SHOAL_SERVICE_ID=task.service_id,
        SHOAL_SERVICE_NAME=task.service_name,
        SHOAL_NODE_ID=task.node_id,
        SHOAL_NODE_HOSTNAME=node_hostname,
    )
    return env
