"""SQLiteStorage: the core's Storage contract, equivalence with MemoryStorage, reopening,
corruption detection (checksums, structure, SQLite) and crash consistency."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from shoal.manager.raft import RaftStorageError, SQLiteStorage, StorageCorrupted
from shoal.raft import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    InvariantViolation,
    LogUnavailable,
    MemoryStorage,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDate,
)
from tests.unit.manager.raft.storage_model import (
    apply_write,
    digest,
    next_write,
    rebuild,
)


def opened(tmp_path: Path, name: str = "raft.db") -> SQLiteStorage:
    return SQLiteStorage.open(tmp_path / name)


def filled(tmp_path: Path, n: int = 20) -> SQLiteStorage:
    s = opened(tmp_path)
    s.bootstrap((1, 2, 3))
    ents = [Entry(term=2, index=i, data=b"payload-%04d" % i) for i in range(2, n + 2)]
    s.save(entries=ents, hard_state=HardState(term=2, vote=1, commit=n))
    return s


def test_new_storage_is_empty_then_bootstraps(tmp_path: Path) -> None:
    s = opened(tmp_path)
    assert s.is_empty and (s.first_index(), s.last_index()) == (1, 0)
    s.bootstrap((3, 1, 2))
    assert not s.is_empty
    assert s.snapshot().metadata == SnapshotMetadata(1, 1, ConfState(voters=(1, 2, 3)))
    assert s.initial_state() == (HardState(term=1, commit=1), ConfState(voters=(1, 2, 3)))
    with pytest.raises(RaftStorageError):
        s.bootstrap((1,))
    s.close()
    again = opened(tmp_path)
    assert digest(again) == digest(rebuild(again)) and again.hard_state.commit == 1


def test_contract_errors_leave_the_storage_usable(tmp_path: Path) -> None:
    s = filled(tmp_path)
    s.save_snapshot(15, ConfState(voters=(1,)), b"state", compact_to=12)
    assert (s.first_index(), s.last_index(), s.term(12)) == (13, 21, 2)
    with pytest.raises(CompactedError):
        s.entries(12, 14, None)
    with pytest.raises(LogUnavailable):
        s.term(22)
    with pytest.raises(SnapshotOutOfDate):
        s.create_snapshot(14, ConfState(voters=(1,)), b"old")
    with pytest.raises(InvariantViolation):
        s.append([Entry(term=3, index=30)])  # a gap
    s.append([Entry(term=3, index=20), Entry(term=3, index=21), Entry(term=3, index=22)])
    assert [s.term(i) for i in (19, 20, 22)] == [2, 3, 3]


def test_a_write_failing_halfway_makes_the_storage_refuse_and_the_file_unchanged(
    tmp_path: Path,
) -> None:
    s = filled(tmp_path)
    before = digest(s)
    snap = Snapshot(metadata=SnapshotMetadata(index=40, term=3, conf_state=ConfState((1,))))
    with pytest.raises(RaftStorageError):
        # The snapshot is applied, then the entries leave a gap: memory and file split.
        s.save(snapshot=snap, entries=[Entry(term=3, index=45)])
    with pytest.raises(RaftStorageError):
        s.last_index()
    s.close()
    assert digest(opened(tmp_path)) == before


def test_matches_memory_storage_and_survives_reopening(tmp_path: Path) -> None:
    rng = random.Random(7)
    s, m = opened(tmp_path), MemoryStorage()
    for step in range(300):
        w = next_write(rng, m)
        apply_write(m, w)
        apply_write(s, w)
        assert digest(s) == digest(m), f"step {step}: {w}"
        if step % 50 == 49:
            s.close()
            s = opened(tmp_path)
            assert digest(s) == digest(m), f"reopened at step {step}"
            m = rebuild(s)  # keeps the tail below the snapshot, as the file does


# --- corruption ---------------------------------------------------------------------------


def _tamper(path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, args)
    db.commit()
    db.close()


def test_a_changed_entry_is_reported_with_file_and_index(tmp_path: Path) -> None:
    filled(tmp_path).close()
    path = tmp_path / "raft.db"
    _tamper(path, "UPDATE entries SET body = CAST(body AS BLOB) || x'00' WHERE idx = 7")
    with pytest.raises(StorageCorrupted) as err:
        opened(tmp_path)
    assert err.value.index == 7 and err.value.path == path
    assert str(path) in str(err.value) and "entry 7" in str(err.value)


def test_a_changed_hard_state_is_reported(tmp_path: Path) -> None:
    filled(tmp_path).close()
    _tamper(tmp_path / "raft.db", "UPDATE meta SET body = x'930501' WHERE key = 'hard_state'")
    with pytest.raises(StorageCorrupted, match="meta row 'hard_state'"):
        opened(tmp_path)


def test_a_missing_entry_is_reported(tmp_path: Path) -> None:
    filled(tmp_path).close()
    _tamper(tmp_path / "raft.db", "DELETE FROM entries WHERE idx = 9")
    with pytest.raises(StorageCorrupted) as err:
        opened(tmp_path)
    assert err.value.index == 9 and "missing" in str(err.value)


def test_a_commit_past_the_log_is_reported(tmp_path: Path) -> None:
    filled(tmp_path).close()
    _tamper(tmp_path / "raft.db", "DELETE FROM entries WHERE idx >= 18")
    with pytest.raises(StorageCorrupted, match="commit 20 is past the last entry 17"):
        opened(tmp_path)


def test_a_flipped_byte_in_a_row_of_the_file_is_detected(tmp_path: Path) -> None:
    filled(tmp_path).close()
    path = tmp_path / "raft.db"
    raw = bytearray(path.read_bytes())
    at = raw.find(b"payload-0011")
    assert at > 0, "the entry must be in the main file after a clean close"
    raw[at + 9] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageCorrupted) as err:
        opened(tmp_path)
    assert err.value.index == 11


def test_any_flipped_byte_is_reported_or_harmless(tmp_path: Path) -> None:
    """Flip one byte anywhere in the file: opening either reports the damage or yields
    exactly the original content (a byte SQLite does not use), never something else."""
    s = filled(tmp_path, 60)
    s.save_snapshot(30, ConfState(voters=(1, 2, 3)), b"S" * 3000, compact_to=25)
    expected = digest(s)
    s.close()
    path = tmp_path / "raft.db"
    pristine = path.read_bytes()
    rng = random.Random(11)
    reported = 0
    for offset in rng.sample(range(len(pristine)), 150):
        damaged = bytearray(pristine)
        damaged[offset] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        for extra in (path.with_name("raft.db-wal"), path.with_name("raft.db-shm")):
            extra.unlink(missing_ok=True)
        try:
            s = SQLiteStorage.open(path)
        except StorageCorrupted as exc:
            assert str(path) in str(exc)
            reported += 1
            continue
        assert digest(s) == expected, f"flip at offset {offset} went unnoticed"
        s.close()
    assert reported > 10
