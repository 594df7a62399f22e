"""The Raft log: durable entries (Storage) followed by not-yet-persisted ones (Unstable).

Invariants: applied <= committed <= last_index(); committed entries are never rewritten
(an attempt raises InvariantViolation); unstable entries, when present, start at
`unstable.offset` and override whatever storage holds from there on.
"""

from __future__ import annotations

from shoal.raft.errors import CompactedError, InvariantViolation, LogUnavailable
from shoal.raft.messages import Entry, EntryType, Snapshot
from shoal.raft.storage import Storage, limit_size

__all__ = ["RaftLog", "Unstable"]


class Unstable:
    """Entries (and possibly a snapshot) that the application has not persisted yet."""

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        return self.snapshot.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.index == i:
                return self.snapshot.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        if self.entries:
            return self.entries[i - self.offset].term
        return self.snapshot.term if self.snapshot is not None else None

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to `i` (of term `t`) are persisted; a mismatch means they were
        replaced after the Ready was handed out, and stay unstable."""
        if i < self.offset or self.maybe_term(i) != t:
            return
        del self.entries[: i + 1 - self.offset]
        self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.index == i:
            self.snapshot = None

    def restore(self, s: Snapshot) -> None:
        self.offset = s.index + 1
        self.entries = []
        self.snapshot = s

    def truncate_and_append(self, ents: list[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replaces the whole unstable part; storage below `after` stays valid.
            self.offset = after
            self.entries = list(ents)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(ents)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    def __init__(self, storage: Storage, max_committed_size: int | None = None) -> None:
        self.storage = storage
        self.unstable = Unstable(storage.last_index() + 1)
        first = storage.first_index()
        self.committed = first - 1
        self.applied = first - 1
        self.max_committed_size = max_committed_size

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, unstable={len(self.unstable.entries)})"
        )

    # --- indices and terms -------------------------------------------------------------

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, i: int) -> int:
        """Term of entry `i`; raises CompactedError/LogUnavailable when out of range."""
        dummy = self.first_index() - 1
        if i < dummy:
            raise CompactedError()
        if i > self.last_index():
            raise LogUnavailable()
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        try:
            return self.term(i)
        except (CompactedError, LogUnavailable):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, t: int) -> bool:
        try:
            return self.term(i) == t
        except (CompactedError, LogUnavailable):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Is a log ending at (last_index, term) at least as up to date as ours? (§5.4.1)"""
        our_term = self.last_term()
        return term > our_term or (term == our_term and last_index >= self.last_index())

    # --- appending -----------------------------------------------------------------------

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: tuple[Entry, ...]
    ) -> int | None:
        """Follower side of MsgApp: the last new index, or None if (index, log_term) is
        not in our log (the leader must back off)."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise InvariantViolation(
                    f"entry {ci} conflicts with committed entry (committed={self.committed})"
                )
            self.append(list(ents[ci - (index + 1) :]))
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise InvariantViolation(f"append after {after} is below committed {self.committed}")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: tuple[Entry, ...]) -> int:
        """Index of the first entry whose term differs from ours (or that we lack), or 0."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (i, term(i)) with i <= index and term(i) <= term: a fast back-off
        point for a leader whose entry at `index` has term `term`."""
        while index > 0:
            try:
                t = self.term(index)
            except (CompactedError, LogUnavailable):
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    # --- committing and applying ---------------------------------------------------------

    def commit_to(self, to_commit: int) -> None:
        if to_commit > self.committed:
            if to_commit > self.last_index():
                raise InvariantViolation(
                    f"commit {to_commit} is past last index {self.last_index()}: "
                    "was the log corrupted, truncated or lost?"
                )
            self.committed = to_commit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Leader: commit `max_index` only if it is an entry of the current term (§5.4.2)."""
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if i > self.committed or i < self.applied:
            raise InvariantViolation(
                f"applied({i}) out of range [prev applied {self.applied}, committed "
                f"{self.committed}]"
            )
        self.applied = i

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def has_next_committed_entries(self) -> bool:
        if self.has_pending_snapshot():
            return False  # the snapshot must be applied first
        return self.committed + 1 > max(self.applied + 1, self.first_index())

    def next_committed_entries(self) -> list[Entry]:
        if not self.has_next_committed_entries():
            return []
        lo = max(self.applied + 1, self.first_index())
        return self.slice(lo, self.committed + 1, self.max_committed_size)

    def has_unapplied_conf_change(self) -> bool:
        lo = self.applied + 1
        if lo > self.committed:
            return False
        ents = self.slice(max(lo, self.first_index()), self.committed + 1, None)
        return any(e.type is EntryType.CONF_CHANGE for e in ents)

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    # --- reading -------------------------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        return list(self.unstable.entries)

    def entries(self, i: int, max_size: int | None) -> list[Entry]:
        last = self.last_index()
        if i > last:
            return []
        return self.slice(i, last + 1, max_size)

    def slice(self, lo: int, hi: int, max_size: int | None) -> list[Entry]:
        """Entries [lo, hi) from storage then unstable; raises CompactedError below the log."""
        if lo > hi:
            raise InvariantViolation(f"invalid slice {lo} > {hi}")
        if lo < self.first_index():
            raise CompactedError()
        if hi > self.last_index() + 1:
            raise InvariantViolation(f"slice [{lo}, {hi}) out of bound {self.last_index()}")
        if lo == hi:
            return []
        ents: list[Entry] = []
        offset = self.unstable.offset
        if lo < offset:
            stop = min(hi, offset)
            try:
                ents = self.storage.entries(lo, stop, max_size)
            except LogUnavailable as exc:
                raise InvariantViolation(f"entries [{lo}, {stop}) missing from storage") from exc
            if len(ents) < stop - lo:
                return ents  # storage hit max_size
        if hi > offset:
            ents = ents + self.unstable.slice(max(lo, offset), hi)
        return limit_size(ents, max_size)

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def restore(self, s: Snapshot) -> None:
        self.committed = s.index
        self.unstable.restore(s)
