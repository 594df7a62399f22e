"""Rolling updates: which out-of-date tasks to replace now.

A batch is at most `UpdateConfig.Parallelism` slots (0 = all at once); the next batch starts
only when the previous batch's old tasks have stopped and its new tasks are running (and
have run for `UpdateConfig.Delay`), so an update never has more than `parallelism` slots in
flight. The update is complete once every task is new and has run for `UpdateConfig.Monitor`
(swarmkit's monitoring period, 5 s by default), so a task that dies right after starting
still counts against the update.
"""

from __future__ import annotations

from shoal.api.states import is_terminal
from shoal.api.timefmt import to_epoch
from shoal.api.types import Service, Task
from shoal.manager.orchestrator.tasks import is_current

__all__ = ["settle_wait", "slots_to_update"]


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


def settle_wait(service: Service, tasks: list[Task], now: float, seconds: float) -> float:
    """Seconds until every running task of the current spec has run for `seconds` (0: now)."""
    if seconds <= 0:
        return 0.0
    started = [
        to_epoch(t.status.timestamp)
        for t in tasks
        if is_current(t)
        and t.spec_version == service.spec_version
        and t.status.state == "running"
        and t.status.timestamp
    ]
    return max((at + seconds - now for at in started), default=0.0) if started else 0.0
