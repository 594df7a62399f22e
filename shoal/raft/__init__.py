"""shoal's Raft consensus, as a pure core in the design of etcd-io/raft.

Nothing in this package does I/O, reads a clock, sleeps, starts tasks or draws random
numbers of its own: time is `RawNode.tick()`, randomness is the `Config.rng` object, and
all effects are handed to the caller as a `Ready` (persist -> send -> apply -> advance).
That is what lets tests/sim drive several nodes through drops, partitions and crashes
from one seed and replay any failure exactly.

Public surface: `RawNode`, `Config`, `Ready`, the message types and their codec,
`Storage` (protocol) with `MemoryStorage`, and the errors.
"""

from shoal.raft.config import Config, RandomSource
from shoal.raft.errors import (
    CompactedError,
    ConfigError,
    InvariantViolation,
    LogUnavailable,
    MessageDecodeError,
    ProposalDropped,
    RaftError,
    SnapshotOutOfDate,
    SnapshotTemporarilyUnavailable,
)
from shoal.raft.messages import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    decode,
    decode_message,
    encode,
    encode_message,
    raft_id,
)
from shoal.raft.node import ProgressView, RawNode, Ready, Status
from shoal.raft.progress import ProgressState
from shoal.raft.readonly import ReadState
from shoal.raft.roles import SoftState, StateRole
from shoal.raft.storage import MemoryStorage, Storage

__all__ = [
    "NONE",
    "CompactedError",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Config",
    "ConfigError",
    "Entry",
    "EntryType",
    "HardState",
    "InvariantViolation",
    "LogUnavailable",
    "MemoryStorage",
    "Message",
    "MessageDecodeError",
    "MessageType",
    "ProgressState",
    "ProgressView",
    "ProposalDropped",
    "RaftError",
    "RandomSource",
    "RawNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotOutOfDate",
    "SnapshotTemporarilyUnavailable",
    "SoftState",
    "StateRole",
    "Status",
    "Storage",
    "decode",
    "decode_message",
    "encode",
    "encode_message",
    "raft_id",
]
