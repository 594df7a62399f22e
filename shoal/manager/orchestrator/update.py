"""Rolling updates and rollbacks, as swarmkit's updater does them: pure decisions, no I/O.

A unit is what one task fills: a slot of a replicated service, a node of a global one. A
batch is at most `Parallelism` units (0 = all at once); the next batch starts only when the
previous one's units have settled (their new task running, the old one stopped) and have run
for `Delay`. Order:
- stop-first: the old task is shut down, its unit gets the new task once it has stopped;
- start-first: the new task is created beside the old one; the old one is shut down only
  when the new one is `running`, which the agent reports once it is ready and in the mesh,
  so the unit always has a task taking traffic.
A task of the update's spec that fails, is rejected or exits before the update is complete
counts as a failure; past `MaxFailureRatio` of the units the `FailureAction` applies: pause
(state `paused`), rollback (state `rollback_started`, the service returns to its previous
spec with `RollbackConfig`) or continue. While rolling back, `RollbackConfig` governs and a
failure pauses the rollback (`rollback_paused`) unless its action is continue. The update is
complete once every task is new and has run for `Monitor` (5 s by default).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from shoal.api.states import is_terminal
from shoal.api.timefmt import to_epoch
from shoal.api.types import Service, Task, UpdateConfig
from shoal.manager.orchestrator.restart import restart_at
from shoal.manager.orchestrator.tasks import is_current

__all__ = [
    "Verdict",
    "active_config",
    "failure_verdict",
    "is_rolling_back",
    "replaced_by_ready",
    "settle_wait",
    "slots_to_update",
]

FAILED_STATES = ("failed", "rejected", "complete", "orphaned")
PAUSED_STATES = ("paused", "rollback_paused")


def unit_of(task: Task) -> tuple[int, str]:
    return (task.slot, task.node_id if task.slot == 0 else "")


def is_rolling_back(service: Service) -> bool:
    state = service.update_status.state if service.update_status else ""
    return state.startswith("rollback")


def active_config(service: Service) -> UpdateConfig:
    """The settings of the rollout in progress: RollbackConfig while rolling back."""
    cfg = service.spec.rollback_config if is_rolling_back(service) else service.spec.update_config
    return cfg if cfg is not None else UpdateConfig(parallelism=1)


def _is_fresh(service: Service, task: Task) -> bool:
    return task.spec_version == service.spec_version


def _stopping(service: Service, task: Task) -> bool:
    return (
        task.desired_state == "shutdown"
        and not _is_fresh(service, task)
        and bool(task.node_id)
        and not is_terminal(task.status.state)
    )


def _busy_units(service: Service, tasks: list[Task], now: float) -> set[tuple[int, str]]:
    """Units whose replacement is under way: a new task not running yet, an old one stopping,
    or (start-first) a new task that failed and waits for its restart delay."""
    busy: set[tuple[int, str]] = set()
    for task in tasks:
        starting = is_current(task) and _is_fresh(service, task)
        if (starting and task.status.state != "running") or _stopping(service, task):
            busy.add(unit_of(task))
        elif _is_fresh(service, task) and task.status.state in FAILED_STATES:
            at = restart_at(service, task)
            if at is None or at > now:
                busy.add(unit_of(task))
    return busy


def slots_to_update(service: Service, tasks: list[Task], now: float = 0.0) -> list[Task]:
    """The old tasks whose units the next batch replaces (none while paused)."""
    state = service.update_status.state if service.update_status else ""
    if state in PAUSED_STATES:
        return []
    current = [t for t in tasks if is_current(t)]
    fresh_units = {unit_of(t) for t in current if _is_fresh(service, t)}
    stale = [t for t in current if not _is_fresh(service, t) and unit_of(t) not in fresh_units]
    if not stale:
        return []
    parallelism = active_config(service).parallelism
    busy = _busy_units(service, tasks, now)
    stale = [t for t in stale if unit_of(t) not in busy]
    budget = len(stale) if parallelism == 0 else max(parallelism - len(busy), 0)
    return sorted(stale, key=lambda t: (t.slot, t.node_id))[:budget]


def replaced_by_ready(service: Service, tasks: list[Task]) -> list[Task]:
    """start-first: old tasks whose unit's new task is running (ready, in the mesh)."""
    ready_units = {
        unit_of(t)
        for t in tasks
        if is_current(t) and _is_fresh(service, t) and t.status.state == "running"
    }
    return [
        t
        for t in tasks
        if is_current(t) and not _is_fresh(service, t) and unit_of(t) in ready_units
    ]


@dataclass(frozen=True)
class Verdict:
    """What a failed rollout turns into: the new UpdateStatus state and its message."""

    state: str
    message: str
    rollback: bool


def failure_verdict(service: Service, tasks: list[Task], units: int) -> Verdict | None:
    """The failure action to take now, or None (no failure past the ratio, or continue)."""
    state = service.update_status.state if service.update_status else ""
    if state not in ("updating", "rollback_started"):
        return None
    failed = sorted(
        (t for t in tasks if _is_fresh(service, t) and t.status.state in FAILED_STATES),
        key=lambda t: t.version.index,
    )
    cfg = active_config(service)
    if not failed or len(failed) <= cfg.max_failure_ratio * max(units, 1):
        return None
    why = f"due to failure or early termination of task {failed[-1].id}"
    action = cfg.failure_action or "pause"
    if action == "continue":
        return None
    if state == "rollback_started":
        return Verdict("rollback_paused", f"rollback paused {why}", False)
    if action == "rollback" and service.previous_spec is not None:
        return Verdict("rollback_started", f"update rolled back {why}", True)
    return Verdict("paused", f"update paused {why}", False)


def settle_wait(service: Service, tasks: list[Task], now: float, seconds: float) -> float:
    """Seconds until every running task of the current spec has run for `seconds` (0: now)."""
    if seconds <= 0:
        return 0.0
    started = [
        to_epoch(t.status.timestamp)
        for t in tasks
        if is_current(t)
        and _is_fresh(service, t)
        and t.status.state == "running"
        and t.status.timestamp
    ]
    return max((at + seconds - now for at in started), default=0.0) if started else 0.0


def units_in(tasks: list[Task]) -> int:
    """How many units the service has tasks for (the failure ratio's denominator)."""
    by_unit: dict[tuple[int, str], int] = defaultdict(int)
    for task in tasks:
        if is_current(task):
            by_unit[unit_of(task)] += 1
    return len(by_unit)
