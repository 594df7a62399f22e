"""MemoryStorage and RaftLog: index arithmetic, compaction, conflicts, commit rules."""

from __future__ import annotations

import pytest

from shoal.raft import (
    CompactedError,
    ConfState,
    Entry,
    InvariantViolation,
    LogUnavailable,
    MemoryStorage,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDate,
)
from shoal.raft.log import RaftLog


def storage(terms: list[int]) -> MemoryStorage:
    """Entries 1.. with these terms, no snapshot."""
    s = MemoryStorage()
    s.append([Entry(t, i + 1) for i, t in enumerate(terms)])
    return s


def test_empty_storage() -> None:
    s = MemoryStorage()
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    assert s.snapshot().is_empty
    with pytest.raises(LogUnavailable):
        s.term(1)


def test_entries_and_terms() -> None:
    s = storage([1, 1, 2, 3])
    assert [e.index for e in s.entries(2, 5, None)] == [2, 3, 4]
    assert s.term(4) == 3
    with pytest.raises(LogUnavailable):
        s.entries(2, 6, None)


def test_entries_size_limit_returns_at_least_one() -> None:
    s = MemoryStorage()
    s.append([Entry(1, i, data=b"x" * 10) for i in range(1, 6)])  # 26 bytes each
    assert len(s.entries(1, 6, 60)) == 2
    assert len(s.entries(1, 6, 1)) == 1


def test_compaction() -> None:
    s = storage([1, 1, 2, 3, 3])
    s.create_snapshot(4, ConfState(voters=(1,)), b"state")
    s.compact(3)  # keeps 4 and 5 as a tail although the snapshot covers 4
    assert (s.first_index(), s.last_index()) == (4, 5)
    assert s.term(3) == 2  # the entry before the first is still known
    with pytest.raises(CompactedError):
        s.term(2)
    with pytest.raises(CompactedError):
        s.entries(3, 5, None)
    with pytest.raises(CompactedError):
        s.compact(2)
    assert s.snapshot().metadata == SnapshotMetadata(4, 3, ConfState(voters=(1,)))
    with pytest.raises(SnapshotOutOfDate):
        s.create_snapshot(4, ConfState(), b"")


def test_append_replaces_a_conflicting_suffix() -> None:
    s = storage([1, 1, 1, 1])
    s.append([Entry(2, 3), Entry(2, 4), Entry(2, 5)])
    assert [s.term(i) for i in range(1, 6)] == [1, 1, 2, 2, 2]
    s.append([Entry(3, 2)])
    assert s.last_index() == 2


def test_append_refuses_a_gap() -> None:
    s = storage([1])
    with pytest.raises(InvariantViolation, match="missing"):
        s.append([Entry(1, 3)])


def test_apply_snapshot_replaces_the_log() -> None:
    s = storage([1, 1, 1])
    s.apply_snapshot(Snapshot(SnapshotMetadata(10, 4, ConfState(voters=(1, 2))), b"img"))
    assert (s.first_index(), s.last_index(), s.term(10)) == (11, 10, 4)
    assert s.initial_state()[1] == ConfState(voters=(1, 2))
    with pytest.raises(SnapshotOutOfDate):
        s.apply_snapshot(Snapshot(SnapshotMetadata(9, 4)))


# --- RaftLog ---------------------------------------------------------------------------


def test_log_reads_storage_then_unstable() -> None:
    log = RaftLog(storage([1, 1, 2]))
    log.append([Entry(3, 4), Entry(3, 5)])
    assert [e.index for e in log.entries(2, None)] == [2, 3, 4, 5]
    assert log.last_term() == 3
    assert [e.index for e in log.unstable_entries()] == [4, 5]
    log.stable_to(5, 3)
    assert log.unstable_entries() == []


def test_stable_to_ignores_entries_replaced_meanwhile() -> None:
    log = RaftLog(storage([1]))
    log.append([Entry(2, 2)])
    log.append([Entry(3, 2)])  # a new leader replaced it before it was persisted
    log.stable_to(2, 2)
    assert [e.term for e in log.unstable_entries()] == [3]


def test_maybe_append() -> None:
    log = RaftLog(storage([1, 1, 2]))
    assert log.maybe_append(3, 1, 0, ()) is None  # (3, 1) is not in our log
    assert log.maybe_append(2, 1, 2, (Entry(3, 3), Entry(3, 4))) == 4  # replaces 3
    assert [log.term(i) for i in (1, 2, 3, 4)] == [1, 1, 3, 3]
    assert log.committed == 2
    assert log.maybe_append(4, 3, 9, ()) == 4
    assert log.committed == 4  # never beyond what the message proves we have


def test_a_committed_entry_is_never_overwritten() -> None:
    log = RaftLog(storage([1, 1, 2]))
    log.commit_to(3)
    with pytest.raises(InvariantViolation, match="committed"):
        log.maybe_append(2, 1, 3, (Entry(3, 3),))


def test_commit_beyond_the_log_is_an_invariant_violation() -> None:
    log = RaftLog(storage([1]))
    with pytest.raises(InvariantViolation):
        log.commit_to(2)


def test_leader_commits_only_its_own_term_by_counting() -> None:
    log = RaftLog(storage([1, 2, 2]))
    assert not log.maybe_commit(3, 3)
    assert log.maybe_commit(3, 2)
    assert log.committed == 3


def test_find_conflict_by_term() -> None:
    log = RaftLog(storage([1, 1, 3, 3, 5]))
    assert log.find_conflict_by_term(5, 4) == (4, 3)  # skip the whole term 5
    assert log.find_conflict_by_term(5, 2) == (2, 1)
    assert log.find_conflict_by_term(5, 0) == (0, 0)
    assert log.find_conflict_by_term(9, 9) == (9, 0)  # beyond our log


def test_up_to_date() -> None:
    log = RaftLog(storage([1, 2]))
    assert log.is_up_to_date(1, 3)
    assert log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(1, 2)
    assert not log.is_up_to_date(9, 1)
