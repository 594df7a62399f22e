"""A simulated disk that loses unsynced writes on a crash.

Writes are batches (one Ready's snapshot + entries + hard state, or one compaction),
atomic like a SQLite transaction. A batch becomes durable at `sync()`. A crash keeps a
random prefix of the unsynced batches (a write-ahead log survives up to some point) and
loses the rest. The node's live MemoryStorage is rebuilt from the durable copy on restart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shoal.raft import Entry, HardState, MemoryStorage, Snapshot

__all__ = ["Batch", "SimDisk", "copy_storage"]


@dataclass(frozen=True)
class Batch:
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()
    hard_state: HardState | None = None
    app_snapshot: bool = False  # `snapshot` is the application's own, then compact
    compact_to: int = 0


def apply_batch(s: MemoryStorage, b: Batch) -> None:
    if b.app_snapshot:
        assert b.snapshot is not None
        s.create_snapshot(b.snapshot.index, b.snapshot.metadata.conf_state, b.snapshot.data)
        if b.compact_to > s.first_index() - 1:
            s.compact(b.compact_to)
        return
    if b.snapshot is not None:
        s.apply_snapshot(b.snapshot)
    s.append(b.entries)
    if b.hard_state is not None:
        s.set_hard_state(b.hard_state)


def copy_storage(src: MemoryStorage) -> MemoryStorage:
    dst = MemoryStorage()
    snap = src.snapshot()
    if not snap.is_empty:
        dst.apply_snapshot(snap)
    first, last = src.first_index(), src.last_index()
    if last >= first:
        dst.append(src.entries(first, last + 1, None))
    dst.set_hard_state(src.hard_state)
    return dst


class SimDisk:
    def __init__(self, initial: MemoryStorage | None = None) -> None:
        self.durable = initial if initial is not None else MemoryStorage()
        self.unsynced: list[Batch] = []
        self.lost_batches = 0

    def write(self, b: Batch) -> None:
        self.unsynced.append(b)

    def sync(self) -> None:
        for b in self.unsynced:
            apply_batch(self.durable, b)
        self.unsynced.clear()

    def crash(self, rng: random.Random) -> None:
        keep = rng.randint(0, len(self.unsynced))
        for b in self.unsynced[:keep]:
            apply_batch(self.durable, b)
        self.lost_batches += len(self.unsynced) - keep
        self.unsynced.clear()

    def load(self) -> MemoryStorage:
        return copy_storage(self.durable)
