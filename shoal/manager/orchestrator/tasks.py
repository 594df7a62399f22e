"""Making tasks from services, and the questions reconcilers ask about them."""

from __future__ import annotations

from shoal.api.codec import clone
from shoal.api.states import TaskState, is_terminal, rank
from shoal.api.timefmt import now_rfc3339
from shoal.api.types import Service, Task, TaskStatusInfo
from shoal.manager.state.store import new_id

__all__ = ["is_current", "is_dead", "new_task", "shut_down"]


def new_task(service: Service, slot: int, node_id: str = "", attempt: int = 0) -> Task:
    return Task(
        id=new_id(),
        spec=clone(service.spec.task_template),
        service_id=service.id,
        service_name=service.spec.name,
        # swarmkit's task annotations carry the service's labels: `stack ps` filters on them
        labels=dict(service.spec.labels) if service.spec.labels else None,
        slot=slot,
        node_id=node_id,
        status=TaskStatusInfo(timestamp=now_rfc3339(), state="new", message="created"),
        desired_state="running",
        spec_version=service.spec_version,
        attempt=attempt,
        ready_ports=sorted(
            {p.target_port for p in service.endpoint.ports or [] if p.protocol == "tcp"}
        )
        or None,
    )


def is_current(task: Task) -> bool:
    """The task is meant to run (desired running) and has not ended."""
    return rank(task.desired_state) <= TaskState.RUNNING and not is_terminal(task.status.state)


def is_dead(task: Task) -> bool:
    """Meant to run but ended: the restart policy decides what happens to its slot."""
    return rank(task.desired_state) <= TaskState.RUNNING and is_terminal(task.status.state)


def shut_down(task: Task, desired: str = "shutdown") -> Task:
    task.desired_state = desired
    return task
