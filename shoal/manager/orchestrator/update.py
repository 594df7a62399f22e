"""Rolling updates: which out-of-date tasks to replace now.

A batch is at most `UpdateConfig.Parallelism` slots (0 = all at once); the next batch starts
only when the previous batch's old tasks have stopped and its new tasks are running, so an
update never has more than `parallelism` slots in flight.
"""

from __future__ import annotations

from shoal.api.states import is_terminal
from shoal.api.types import Service, Task
from shoal.manager.orchestrator.tasks import is_current

__all__ = ["slots_to_update"]


def slots_to_update(service: Service, tasks: list[Task]) -> list[Task]:
    current = [t for t in tasks if is_current(t)]
    stale = [t for t in current if t.spec_version < service.spec_version]
    if not stale:
        return []
    cfg = service.spec.update_config
    parallelism = cfg.parallelism if cfg is not None else 1
    starting = sum(
        1 for t in current if t.spec_version == service.spec_version and t.status.state != "running"
    )
    stopping = sum(
        1
        for t in tasks
        if t.desired_state == "shutdown"
        and t.spec_version < service.spec_version
        and t.node_id
        and not is_terminal(t.status.state)
    )
    in_flight = starting + stopping
    budget = len(stale) if parallelism == 0 else max(parallelism - in_flight, 0)
    return sorted(stale, key=lambda t: (t.slot, t.node_id))[:budget]
