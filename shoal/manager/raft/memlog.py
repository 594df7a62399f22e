"""The in-memory image of the durable Raft log that `SQLiteStorage` keeps in front of its file.

It is `MemoryStorage` (shoal/raft/storage.py: the reads, the validation and the bookkeeping
of every write) plus one thing more: it can be rebuilt from what the file holds, including a
kept tail of entries *below* the snapshot index (compaction keeps a tail for slow
followers). Layout as in `MemoryStorage`: `_ents[0]` is a dummy entry holding the index and
term just before the first entry (the compaction point), the snapshot is kept apart.

The SQLite side mirrors each change in the same transaction; `compact` returns the new
dummy entry and `append` the entries actually stored, which is what the file records.
"""

from __future__ import annotations

from shoal.raft import Entry, HardState, Snapshot
from shoal.raft.storage import MemoryStorage

__all__ = ["MemLog"]


class MemLog(MemoryStorage):
    def __init__(
        self,
        hard_state: HardState = HardState(),
        snapshot: Snapshot = Snapshot(),
        start: Entry = Entry(term=0, index=0),
        entries: list[Entry] | None = None,
    ) -> None:
        super().__init__()
        self._hard_state = hard_state
        self._snapshot = snapshot
        self._ents = [Entry(term=start.term, index=start.index), *(entries or [])]

    @property
    def start(self) -> Entry:
        """The dummy entry: index and term just before the first stored entry."""
        return self._ents[0]
