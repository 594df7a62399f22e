"""The durable log as Raft reads it: the Storage protocol and an in-memory implementation.

Raft only *reads* storage. The application writes to it while handling a Ready, in this
order: the Ready's snapshot (`apply_snapshot`), its entries (`append`), its hard state
(`set_hard_state`) — all durable before the Ready's messages are sent. Compaction
(`create_snapshot` then `compact`) is the application's choice, done after `advance`.

Index layout: a storage holds a snapshot at index S (S = 0 when there is none) and the
entries S+1 .. last. `first_index()` is S+1; `term(S)` is the snapshot's term, so the term
of the entry just before the first one is always known (Raft needs it for MsgApp).
"""

from __future__ import annotations

import itertools
from typing import Protocol

from shoal.raft.errors import (
    CompactedError,
    InvariantViolation,
    LogUnavailable,
    SnapshotOutOfDate,
)
from shoal.raft.messages import ConfState, Entry, HardState, Snapshot, SnapshotMetadata

__all__ = ["MemoryStorage", "Storage", "entry_size", "limit_size"]

_ENTRY_OVERHEAD = 16


def entry_size(e: Entry) -> int:
    return len(e.data) + _ENTRY_OVERHEAD


def limit_size(ents: list[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix of `ents` within `max_size` bytes, but never fewer than one entry."""
    if max_size is None or not ents:
        return ents
    total = 0
    for i, e in enumerate(ents):
        total += entry_size(e)
        if total > max_size and i > 0:
            return ents[:i]
    return ents


class Storage(Protocol):
    """Read access to the durable log. Implementations must be consistent with what the
    application persisted: everything returned was made durable by an earlier Ready.

    Errors: an index below the snapshot raises `CompactedError`; one past the last entry
    raises `LogUnavailable`. Raft treats any other exception as fatal.
    """

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted HardState and the ConfState of the latest snapshot."""
        ...

    def entries(self, lo: int, hi: int, max_size: int | None) -> list[Entry]:
        """Entries [lo, hi), at most `max_size` bytes but at least one if any."""
        ...

    def term(self, index: int) -> int:
        """Term of entry `index`, for first_index()-1 <= index <= last_index()."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot; may raise SnapshotTemporarilyUnavailable (Raft retries)."""
        ...


class MemoryStorage:
    """Storage kept in memory: for tests, simulations, and as the cache a durable driver
    keeps in front of its disk. Not thread-safe (Raft is driven from one thread/task)."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot()
        # _ents[0] is a dummy entry holding the snapshot's index and term.
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    @classmethod
    def bootstrap(
        cls, voters: tuple[int, ...], data: bytes = b"", learners: tuple[int, ...] = ()
    ) -> MemoryStorage:
        """A storage whose log starts at a snapshot (index 1, term 1) of the initial members.

        Every founding member starts from the same one; nodes that join later start empty
        and receive a snapshot from the leader (which carries the configuration).
        """
        s = cls()
        cs = ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
        meta = SnapshotMetadata(index=1, term=1, conf_state=cs)
        s.apply_snapshot(Snapshot(metadata=meta, data=data))
        s.set_hard_state(HardState(term=1, commit=1))
        return s

    # --- Storage protocol ------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.metadata.conf_state

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
        return self._snapshot

    # --- writes (the application's side) -------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log by `snap` (a snapshot received from the leader)."""
        if snap.index < self._snapshot.index:
            raise SnapshotOutOfDate()
        self._snapshot = snap
        self._ents = [Entry(term=snap.term, index=snap.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the application's snapshot of its state at applied `index`."""
        if index <= self._snapshot.index:
            raise SnapshotOutOfDate()
        if index > self.last_index():
            raise InvariantViolation(f"snapshot {index} is past last index {self.last_index()}")
        meta = SnapshotMetadata(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(metadata=meta, data=data)
        return self._snapshot

    def compact(self, compact_index: int) -> Entry:
        """Drop entries before `compact_index` (which becomes the dummy entry); returns it.

        Keeping a tail (compacting below the snapshot index) lets slightly slow followers
        catch up from entries instead of a whole snapshot.
        """
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
        """Append entries, replacing any conflicting suffix (a new leader's log wins);
        returns the entries actually stored (those below the first index were compacted)."""
        if not entries:
            return []
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return []  # all already compacted
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
