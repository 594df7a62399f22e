"""The managers' store replicated by Raft: the asyncio driver around the pure core
(shoal/raft), its durable SQLite storage, the transport contract, and the store's `Log`.

    RaftLog (Store's Log) ── RaftNode (driver: tick, persist -> send -> apply -> advance)
                                 ├── SQLiteStorage (WAL, checksummed rows, fsync per Ready)
                                 ├── Transport (2377 in tls_transport.py; InMemory here)
                                 └── StateMachine (StoreStateMachine: Store.apply/load)

Invariants: nothing is sent before the Ready that promises it is durable; committed
entries are applied in log order on every replica; a write is acknowledged only once
committed and applied locally; a corrupted storage file is reported, never used.
See docs/design/raft-driver.md.
"""

from shoal.manager.raft.config import LIVE_FIELDS, RaftNodeConfig, StateMachine
from shoal.manager.raft.errors import NotLeader, RaftStorageError, StorageCorrupted
from shoal.manager.raft.leadership import LeadershipCallback
from shoal.manager.raft.node import RaftNode
from shoal.manager.raft.raftlog import RaftLog, StoreStateMachine
from shoal.manager.raft.snapshot import decode_store, encode_store, load_store
from shoal.manager.raft.storage import SQLiteStorage
from shoal.manager.raft.transport import (
    InMemoryNetwork,
    InMemoryTransport,
    MessageReceiver,
    PeerReporter,
    Transport,
)

__all__ = [
    "LIVE_FIELDS",
    "InMemoryNetwork",
    "InMemoryTransport",
    "LeadershipCallback",
    "MessageReceiver",
    "NotLeader",
    "PeerReporter",
    "RaftLog",
    "RaftNode",
    "RaftNodeConfig",
    "RaftStorageError",
    "SQLiteStorage",
    "StateMachine",
    "StorageCorrupted",
    "StoreStateMachine",
    "Transport",
    "decode_store",
    "encode_store",
    "load_store",
]
