"""Test helpers for the SQLite Raft storage: a reference model (the core's MemoryStorage),
a generator of Raft-shaped writes, a digest of a storage's whole content, and the crash
writer run as a subprocess (`python -m tests.unit.manager.raft.storage_model PATH SEED`).
"""

from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import dataclass

from shoal.manager.raft.storage import SQLiteStorage
from shoal.raft import (
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Snapshot,
    SnapshotMetadata,
    encode,
)

CONF = ConfState(voters=(1, 2, 3))


@dataclass(frozen=True)
class Write:
    """One Ready-like write (snapshot/entries/hard state) or one app snapshot+compaction."""

    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()
    hard_state: HardState | None = None
    app_snapshot: int = 0  # index of the application snapshot to take, then compact
    compact_to: int = 0


def digest(s: SQLiteStorage | MemoryStorage) -> str:
    h = hashlib.blake2b(digest_size=16)
    first, last = s.first_index(), s.last_index()
    h.update(encode(s.hard_state))
    h.update(encode(s.snapshot()))
    h.update(b"%d %d %d" % (first, last, s.term(first - 1)))
    if last >= first:
        for e in s.entries(first, last + 1, None):
            h.update(encode(e))
    return h.hexdigest()


def rebuild(s: SQLiteStorage) -> MemoryStorage:
    """A MemoryStorage with exactly `s`'s content (including a tail below the snapshot)."""
    m = MemoryStorage()
    snap = s.snapshot()
    start, first, last = s.first_index() - 1, s.first_index(), s.last_index()
    if start > 0 and snap.index > start:
        meta = SnapshotMetadata(
            index=start, term=s.term(start), conf_state=snap.metadata.conf_state
        )
        m.apply_snapshot(Snapshot(metadata=meta))
    elif not snap.is_empty:
        m.apply_snapshot(snap)
    if last >= first:
        m.append(s.entries(first, last + 1, None))
    if snap.index > start:
        m.create_snapshot(snap.index, snap.metadata.conf_state, snap.data)
    m.set_hard_state(s.hard_state)
    return m


def apply_write(s: SQLiteStorage | MemoryStorage, w: Write) -> None:
    if w.app_snapshot and isinstance(s, SQLiteStorage):
        s.save_snapshot(w.app_snapshot, CONF, b"state@%d" % w.app_snapshot, w.compact_to)
        return
    if w.app_snapshot:
        s.create_snapshot(w.app_snapshot, CONF, b"state@%d" % w.app_snapshot)
        if w.compact_to >= s.first_index():
            s.compact(w.compact_to)
        return
    if isinstance(s, SQLiteStorage):
        s.save(snapshot=w.snapshot, entries=w.entries, hard_state=w.hard_state, sync=True)
        return
    if w.snapshot is not None:
        s.apply_snapshot(w.snapshot)
    s.append(w.entries)
    if w.hard_state is not None:
        s.set_hard_state(w.hard_state)


def next_write(rng: random.Random, m: MemoryStorage) -> Write:
    """A write Raft could make on `m`: appends (replacing only uncommitted entries),
    commit advances, leader snapshots, and the application's snapshots with a tail."""
    hs = m.hard_state
    term = max(hs.term, 1) + (1 if rng.random() < 0.15 else 0)
    first, last, commit = m.first_index(), m.last_index(), hs.commit
    snap_index = m.snapshot().index
    roll = rng.random()
    if roll < 0.1 and commit > snap_index:
        index = rng.randint(snap_index + 1, commit)
        return Write(app_snapshot=index, compact_to=index - rng.randint(0, 5))
    if roll < 0.15:
        index = last + rng.randint(1, 5)
        meta = SnapshotMetadata(index=index, term=term, conf_state=CONF)
        snap = Snapshot(metadata=meta, data=b"leader@%d" % index)
        return Write(snapshot=snap, hard_state=HardState(term=term, vote=1, commit=index))
    start = rng.randint(max(first, commit + 1), last + 1)
    size = rng.choice([8, 64, 600])
    ents = tuple(
        Entry(term=term, index=i, data=rng.randbytes(rng.randint(0, size)))
        for i in range(start, start + rng.randint(1, 8))
    )
    new_commit = rng.randint(commit, ents[-1].index) if rng.random() < 0.7 else commit
    return Write(entries=ents, hard_state=HardState(term=term, vote=1, commit=new_commit))


def main(path: str, seed: int) -> None:
    """The crash writer: announce the digest each write will produce ("B n digest"), do
    it, acknowledge it ("A n"); the parent kills us at a random moment."""
    storage = SQLiteStorage.open(path)
    model = rebuild(storage)
    rng = random.Random(seed)
    print(f"S {digest(model)}", flush=True)
    for n in range(100_000):
        w = next_write(rng, model)
        apply_write(model, w)
        print(f"B {n} {digest(model)}", flush=True)
        apply_write(storage, w)
        print(f"A {n}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
