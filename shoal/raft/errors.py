"""Errors of the Raft core, placed in shoal's exception tree.

    ShoalError
    ├── Unavailable
    │   └── ProposalDropped         no leader, leader transfer under way, conf change pending
    ├── InvalidArgument
    │   ├── MessageDecodeError      bytes from the wire that are not a valid message
    │   └── ConfigError             a Config or a call that makes no sense
    └── RaftError                   the log/storage contract (below) and broken invariants
        ├── CompactedError          the index asked for was compacted into a snapshot
        ├── LogUnavailable          the index asked for is past the end of the log
        ├── SnapshotOutOfDate       a snapshot older than the one storage already has
        ├── SnapshotTemporarilyUnavailable   storage cannot give a snapshot now; retry later
        └── InvariantViolation      a broken promise (corrupt or lost storage, a core bug)

`InvariantViolation` is never caught inside the core: it means the node must stop.
"""

from __future__ import annotations

from shoal.errors import InvalidArgument, ShoalError, Unavailable

__all__ = [
    "CompactedError",
    "ConfigError",
    "InvariantViolation",
    "LogUnavailable",
    "MessageDecodeError",
    "ProposalDropped",
    "RaftError",
    "SnapshotOutOfDate",
    "SnapshotTemporarilyUnavailable",
]


class RaftError(ShoalError):
    """Base of the errors that belong to Raft's storage contract and invariants."""


class CompactedError(RaftError):
    def __init__(self, message: str = "requested index is unavailable due to compaction") -> None:
        super().__init__(message)


class LogUnavailable(RaftError):
    def __init__(self, message: str = "requested entry at index is unavailable") -> None:
        super().__init__(message)


class SnapshotOutOfDate(RaftError):
    def __init__(self, message: str = "requested index is older than the snapshot") -> None:
        super().__init__(message)


class SnapshotTemporarilyUnavailable(RaftError):
    def __init__(self, message: str = "snapshot is temporarily unavailable") -> None:
        super().__init__(message)


class InvariantViolation(RaftError):
    """Raft's state contradicts itself: a bug or storage that lost acknowledged data."""


class ProposalDropped(Unavailable):
    """The proposal (or read, or transfer) was not accepted; retrying later may succeed."""


class MessageDecodeError(InvalidArgument):
    """Bytes that do not decode to a valid Raft message (garbage, too big, inconsistent)."""


class ConfigError(InvalidArgument):
    """An invalid Config or a call that contradicts the node's state."""
