"""Task states, ordered as swarmkit orders them.

A task only moves forward: `check_transition` refuses a backwards move, which is always a bug
(an agent reporting an old status, a reconciler racing another) and must fail loudly.
"""

from __future__ import annotations

from enum import IntEnum

from shoal.errors import InvalidArgument

__all__ = ["TaskState", "check_transition", "is_terminal", "rank"]


class TaskState(IntEnum):
    NEW = 0
    PENDING = 64
    ASSIGNED = 192
    ACCEPTED = 256
    PREPARING = 320
    READY = 384
    STARTING = 448
    RUNNING = 512
    COMPLETE = 576
    SHUTDOWN = 640
    FAILED = 704
    REJECTED = 768
    REMOVE = 800
    ORPHANED = 832

    @property
    def text(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> TaskState:
        try:
            return cls[value.upper()]
        except KeyError:
            raise InvalidArgument(f"invalid task state {value!r}") from None


def rank(value: str) -> TaskState:
    return TaskState.parse(value) if value else TaskState.NEW


def is_terminal(value: str) -> bool:
    return rank(value) > TaskState.RUNNING


def check_transition(old: str, new: str) -> None:
    """Raise if moving a task's observed state from `old` to `new` goes backwards."""
    if rank(new) < rank(old):
        raise InvalidArgument(f"task state cannot move backwards from {old} to {new}")
