"""The in-memory image of the durable Raft log that `SQLiteStorage` keeps in front of its file.

It has `MemoryStorage`'s semantics (shoal/raft/storage.py) and one thing more: it can be
rebuilt from what the file holds, including a kept tail of entries *below* the snapshot
index (compaction keeps a tail for slow followers). Layout: `_ents[0]` is a dummy entry
holding the index and term just before the first entry (the compaction point), the
snapshot is kept apart; `first_index() == _ents[0].index + 1`.

Every method is pure bookkeeping; the SQLite side mirrors each change in the same
transaction. Validation (what raises) lives here so both sides agree on it.
"""

from __future__ import annotations

import itertools

from shoal.raft import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    InvariantViolation,
    LogUnavailable,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDate,
)
from shoal.raft.storage import limit_size

__all__ = ["MemLog"]


class MemLog:
    def __init__(
        self,
        hard_state: HardState = HardState(),
        snapshot: Snapshot = Snapshot(),
        start: Entry = Entry(term=0, index=0),
        entries: list[Entry] | None = None,
    ) -> None:
        self.hard_state = hard_state
        self.snap = snapshot
        self._ents: list[Entry] = [Entry(term=start.term, index=start.index), *(entries or [])]

    # --- reads (the Storage protocol) -------------------------------------------------

    @property
    def start(self) -> Entry:
        """The dummy entry: index and term just before the first stored entry."""
        return self._ents[0]

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self.snap.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int | None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError()
        if hi > self.last_index() + 1:
            raise LogUnavailable(f"entries [{lo}, {hi}) beyond last index {self.last_index()}")
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise CompactedError()
        if index - offset >= len(self._ents):
            raise LogUnavailable()
        return self._ents[index - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self.snap

    # --- writes: each returns what the file must record -----------------------------------

    def apply_snapshot(self, snap: Snapshot) -> None:
        if snap.index < self.snap.index:
            raise SnapshotOutOfDate()
        self.snap = snap
        self._ents = [Entry(term=snap.term, index=snap.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        if index <= self.snap.index:
            raise SnapshotOutOfDate()
        if index > self.last_index():
            raise InvariantViolation(f"snapshot {index} is past last index {self.last_index()}")
        meta = SnapshotMetadata(index=index, term=self.term(index), conf_state=conf_state)
        self.snap = Snapshot(metadata=meta, data=data)
        return self.snap

    def compact(self, compact_index: int) -> Entry:
        """Drop entries up to `compact_index`, which becomes the dummy; returns it."""
        offset = self._ents[0].index
        if compact_index <= offset:
            raise CompactedError()
        if compact_index > self.last_index():
            raise InvariantViolation(f"compact {compact_index} is past {self.last_index()}")
        i = compact_index - offset
        start = Entry(term=self._ents[i].term, index=compact_index)
        self._ents = [start, *self._ents[i + 1 :]]
        return start

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> list[Entry]:
        """Append, replacing any conflicting suffix; returns the entries actually stored
        (those below the first index are dropped: they were compacted)."""
        if not entries:
            return []
        first = self.first_index()
        if entries[-1].index < first:
            return []
        ents = list(entries)
        if first > ents[0].index:
            ents = ents[first - ents[0].index :]
        offset = ents[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise InvariantViolation(
                f"missing log entry [last: {self.last_index()}, append at: {ents[0].index}]"
            )
        for prev, e in itertools.pairwise(ents):
            if e.index != prev.index + 1:
                raise InvariantViolation(f"entries not contiguous at {prev.index} -> {e.index}")
        del self._ents[offset:]
        self._ents.extend(ents)
        return ents
