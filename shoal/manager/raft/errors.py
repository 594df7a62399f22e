"""Errors of the managers' Raft driver and its durable storage.

    ShoalError
    ├── Unavailable
    │   └── NotLeader           this manager cannot take the write; `leader` says who can
    └── RaftStorageError        the durable Raft storage failed (disk, SQLite)
        └── StorageCorrupted    the file fails its checksums or structure: never used

`NotLeader` is the hook for forwarding: a follower manager's API layer catches it and
replays the whole request on the leader (over 2377), because a batch built against a
follower's possibly stale view must not be committed blindly.
"""

from __future__ import annotations

from pathlib import Path

from shoal.errors import ShoalError, Unavailable

__all__ = ["NotLeader", "RaftStorageError", "StorageCorrupted"]


class NotLeader(Unavailable):
    """This node is not (or no longer, or not yet) a leader able to commit.

    `leader` is the Raft ID of the leader this node knows of, 0 when none is known."""

    def __init__(self, message: str, leader: int = 0) -> None:
        super().__init__(message)
        self.leader = leader


class RaftStorageError(ShoalError):
    """The Raft storage could not read or write its file; the node must stop."""


class StorageCorrupted(RaftStorageError):
    """The Raft storage file is damaged; it is reported, never silently used.

    `path` names the file; `index` the log index of the damaged entry when known."""

    def __init__(self, path: Path | str, detail: str, index: int | None = None) -> None:
        where = f" (entry {index})" if index is not None else ""
        super().__init__(f"raft storage {path} is corrupted{where}: {detail}")
        self.path = Path(path)
        self.index = index
