"""Restart policy: when a task of a slot has ended, may the slot get a new one, and when.

Decided from the task's observed state only, so every pass reaches the same answer: a task
that ended by itself (complete, failed, rejected) is subject to the policy; a task shut down
on purpose (scale, update, drain) is replaced at once.
"""

from __future__ import annotations

from shoal.api.timefmt import to_epoch
from shoal.api.types import Service, Task

__all__ = ["restart_at"]

_ENDED_BY_ITSELF = ("complete", "failed", "rejected", "orphaned")


def restart_at(service: Service, dead: Task) -> float | None:
    """Epoch seconds from which `dead`'s slot may get a replacement, or None for never."""
    if dead.status.state not in _ENDED_BY_ITSELF:
        return 0.0
    policy = service.spec.task_template.restart_policy
    condition = (policy.condition if policy else None) or "any"
    failed = dead.status.state != "complete"
    if condition == "none" or (condition == "on-failure" and not failed):
        return None
    if policy and policy.max_attempts and dead.attempt + 1 > policy.max_attempts:
        return None
    delay = (policy.delay or 0) / 1e9 if policy else 5.0
    return to_epoch(dead.status.timestamp) + delay
