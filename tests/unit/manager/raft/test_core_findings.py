"""Findings about the pure core (shoal/raft), kept as tests until the core is fixed.

Restart with a kept tail: `Raft._load_hard_state` takes `max(hs.commit, first_index-1)`
as the commit index, relying on the snapshot index being first_index-1 ("the snapshot
proves its index committed"). After `compact(i)` with i below the snapshot index (the
kept tail raft.md recommends), first_index-1 is i, not the snapshot index, so a
persisted commit older than the snapshot (commit-only writes are not synced) makes
`Config(applied=snapshot index)` raise InvariantViolation at start-up. SQLiteStorage
never presents that state (it writes in order and clamps the commit to the snapshot on
load), but a storage keeping snapshots in separate files could. Fix: in the core, take
`max(hs.commit, storage.snapshot().index)`.
"""

from __future__ import annotations

import random

from shoal.raft import Config, ConfState, Entry, HardState, MemoryStorage, RawNode


def test_restart_with_a_kept_tail_and_an_unsynced_commit() -> None:
    s = MemoryStorage()
    s.append([Entry(1, i) for i in range(1, 13)])
    s.create_snapshot(10, ConfState(voters=(1,)), b"")
    s.compact(5)  # keep entries 6..12 as a tail below and after the snapshot
    s.set_hard_state(HardState(term=1, commit=7))  # the commit write after 7 was lost
    node = RawNode(Config(id=1, rng=random.Random(0), applied=10), s)
    assert node.committed >= 10 and node.applied == 10
