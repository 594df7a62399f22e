"""The agent ↔ dispatcher contract: assignments down, task status up.

Both planes import it from here: the agent (which calls it) and the manager's dispatcher
(which serves it, in-process as `LocalSession` or over 2377 for remote workers), so
neither imports the other. Pure types, no I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import msgspec

from shoal.api.types import Task, TaskStatusInfo

__all__ = ["LEADER_AT", "AgentSession", "StatusUpdate"]

# How a follower's refusal names the leader: "... the leader is at <addr>" (a worker follows it).
LEADER_AT = "the leader is at "


class StatusUpdate(msgspec.Struct):
    task_id: str
    status: TaskStatusInfo
    address: str = ""


class AgentSession(Protocol):
    def assignments(self) -> AsyncIterator[list[Task]]:
        """Every task assigned to this node, again after each change that concerns them."""
        ...

    async def report(self, updates: list[StatusUpdate]) -> None:
        """Record observed task states; a backwards transition raises (it is a bug)."""
        ...

    async def heartbeat(self) -> None: ...
