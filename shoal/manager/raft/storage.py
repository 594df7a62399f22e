"""Durable Raft storage in SQLite: the core's `Storage` protocol plus MemoryStorage's writes.

Layout (one file, WAL mode): `entries(idx, body, crc)` holds the log, `meta(key, body, crc)`
holds the format tag, the hard state, the compaction point ("start": index and term just
before the first entry) and the latest snapshot. Every body is the core's msgpack encoding
and every row carries a CRC-32 of its key and body; loading verifies each one, plus the
structure (contiguous indices, terms that never decrease, a snapshot and a commit index
consistent with the log). A damaged file raises `StorageCorrupted` naming the file and the
entry; it is never silently used.

Durability and atomicity: `save()` writes one Ready (snapshot, entries, hard state) in one
SQLite transaction, with `synchronous=FULL` (the WAL is fsynced at commit) when the Ready
says `must_sync` and `NORMAL` otherwise (only the commit index changed: it is learnt again
from the leader if lost). A crash therefore leaves the file at a Ready boundary.

Reads are served from an in-memory image (`MemLog`) updated in the same call as the file;
a failed write leaves memory ahead of the file, so the storage then refuses every call
(reopen it). Not thread-safe: one caller at a time. `persist()` runs `save()` on the
storage's own thread so the event loop keeps running during the fsync; the caller must
not touch the storage until it returns.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from shoal.manager.raft.errors import RaftStorageError, StorageCorrupted
from shoal.manager.raft.memlog import MemLog
from shoal.raft import (
    ConfState,
    Entry,
    HardState,
    MessageDecodeError,
    RaftError,
    Snapshot,
    SnapshotMetadata,
    decode,
    encode,
)

__all__ = ["FORMAT", "SQLiteStorage"]

FORMAT: Final = b"shoal-raft-storage-1"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, body BLOB NOT NULL,"
    " crc INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, body BLOB NOT NULL,"
    " crc INTEGER NOT NULL)",
)


def _crc(key: bytes, body: bytes) -> int:
    return zlib.crc32(body, zlib.crc32(key))


def _entry_key(index: int) -> bytes:
    return index.to_bytes(8, "big")


class SQLiteStorage:
    """Open with `SQLiteStorage.open(path)`; see the module docstring for the contract."""

    def __init__(self, path: Path, db: sqlite3.Connection, mem: MemLog, *, fsync: bool) -> None:
        self.path = path
        self._db = db
        self._mem = mem
        self._fsync = fsync
        self._sync_mode: str | None = None
        self._in_txn = False
        self._mutated = False
        self._broken: str | None = None
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def open(cls, path: Path | str, *, fsync: bool = True) -> SQLiteStorage:
        """Open (or create) the storage at `path`, verifying every row.

        `fsync=False` never syncs (for benchmarks' baselines only: it loses acknowledged
        writes on a power failure)."""
        path = Path(path)
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise RaftStorageError(f"raft storage {path}: cannot open: {exc}") from exc
        try:
            mem = _load(path, db)
        except BaseException:
            db.close()
            raise
        return cls(path, db, mem, fsync=fsync)

    # --- the Storage protocol (reads, from memory) --------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        self._check()
        return self._mem.initial_state()

    def entries(self, lo: int, hi: int, max_size: int | None) -> list[Entry]:
        self._check()
        return self._mem.entries(lo, hi, max_size)

    def term(self, index: int) -> int:
        self._check()
        return self._mem.term(index)

    def first_index(self) -> int:
        self._check()
        return self._mem.first_index()

    def last_index(self) -> int:
        self._check()
        return self._mem.last_index()

    def snapshot(self) -> Snapshot:
        self._check()
        return self._mem.snapshot()

    @property
    def hard_state(self) -> HardState:
        return self._mem.hard_state

    @property
    def is_empty(self) -> bool:
        """Nothing was ever stored: a joining node starts so, a founder bootstraps."""
        m = self._mem
        return m.snapshot().is_empty and m.last_index() == 0 and m.hard_state == HardState()

    # --- writes ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, sync: bool = True) -> Iterator[None]:
        """Group writes into one atomic SQLite transaction (nested calls join it)."""
        self._check()
        if self._in_txn:
            yield
            return
        mode = "FULL" if sync and self._fsync else "NORMAL"
        try:
            if mode != self._sync_mode:
                self._db.execute(f"PRAGMA synchronous={mode}")
                self._sync_mode = mode
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        self._in_txn, self._mutated = True, False
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, RaftError) and not self._mutated:
                # A contract error (e.g. SnapshotOutOfDate) raised before memory changed
                # leaves both sides as they were; anything else may have split them.
                raise
            raise self._fail(exc) from exc
        finally:
            self._in_txn = False

    def bootstrap(
        self, voters: tuple[int, ...], data: bytes = b"", learners: tuple[int, ...] = ()
    ) -> None:
        """Make a founding member's storage: a snapshot at index 1, term 1 with the members."""
        if not self.is_empty:
            raise RaftStorageError(f"raft storage {self.path} is not empty; cannot bootstrap")
        cs = ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
        snap = Snapshot(metadata=SnapshotMetadata(index=1, term=1, conf_state=cs), data=data)
        self.save(snapshot=snap, hard_state=HardState(term=1, commit=1), sync=True)

    def save(
        self,
        *,
        snapshot: Snapshot | None = None,
        entries: tuple[Entry, ...] | list[Entry] = (),
        hard_state: HardState | None = None,
        sync: bool = True,
    ) -> None:
        """Persist one Ready: its snapshot, entries and hard state in one transaction."""
        with self.transaction(sync=sync):
            if snapshot is not None:
                self.apply_snapshot(snapshot)
            if entries:
                self.append(entries)
            if hard_state is not None:
                self.set_hard_state(hard_state)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log by `snap` (received from the leader)."""
        with self.transaction():
            self._mem.apply_snapshot(snap)
            self._mutated = True
            self._db.execute("DELETE FROM entries")
            self._put_meta("snapshot", encode(snap))
            self._put_meta("start", encode(self._mem.start))

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        """Append entries, replacing any conflicting suffix (a new leader's log wins)."""
        with self.transaction():
            stored = self._mem.append(entries)
            if not stored:
                return
            self._mutated = True
            self._db.execute("DELETE FROM entries WHERE idx >= ?", (stored[0].index,))
            rows = []
            for e in stored:
                body = encode(e)
                rows.append((e.index, body, _crc(_entry_key(e.index), body)))
            self._db.executemany("INSERT INTO entries VALUES (?, ?, ?)", rows)

    def set_hard_state(self, hs: HardState) -> None:
        with self.transaction():
            self._mem.set_hard_state(hs)
            self._mutated = True
            self._put_meta("hard_state", encode(hs))

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the application's snapshot of its state at applied `index`."""
        with self.transaction(sync=False):
            snap = self._mem.create_snapshot(index, conf_state, data)
            self._mutated = True
            self._put_meta("snapshot", encode(snap))
        return snap

    def compact(self, compact_index: int) -> None:
        """Drop entries up to `compact_index` (keep those after it for slow followers)."""
        with self.transaction(sync=False):
            start = self._mem.compact(compact_index)
            self._mutated = True
            self._db.execute("DELETE FROM entries WHERE idx <= ?", (compact_index,))
            self._put_meta("start", encode(start))

    def save_snapshot(
        self, index: int, conf_state: ConfState, data: bytes, compact_to: int
    ) -> Snapshot:
        """`create_snapshot` then `compact(compact_to)` (if it drops anything), atomically.
        Not synced: if lost in a crash, the log it would have replaced is still there."""
        with self.transaction(sync=False):
            snap = self.create_snapshot(index, conf_state, data)
            if compact_to >= self._mem.first_index():
                self.compact(compact_to)
        return snap

    # --- off the event loop -----------------------------------------------------------------

    async def persist(
        self,
        *,
        snapshot: Snapshot | None,
        entries: tuple[Entry, ...],
        hard_state: HardState | None,
        sync: bool,
    ) -> None:
        """`save()` on the storage's thread (the fsync does not block the event loop)."""
        save = functools.partial(
            self.save, snapshot=snapshot, entries=entries, hard_state=hard_state, sync=sync
        )
        await asyncio.get_running_loop().run_in_executor(self._thread(), save)

    async def persist_snapshot(
        self, index: int, conf_state: ConfState, data: bytes, compact_to: int
    ) -> Snapshot:
        save = functools.partial(self.save_snapshot, index, conf_state, data, compact_to)
        return await asyncio.get_running_loop().run_in_executor(self._thread(), save)

    async def aclose(self) -> None:
        """Wait for a write still running on the storage's thread (e.g. its caller was
        cancelled: a crash), then close. Afterwards reopen the file to use it again."""
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, lambda: None)
            self._executor.shutdown(wait=True)
            self._executor = None
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._broken = self._broken or "closed"
        self._db.close()

    # --- internals ----------------------------------------------------------------------------

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="raft-storage")
        return self._executor

    def _put_meta(self, key: str, body: bytes) -> None:
        crc = _crc(key.encode(), body)
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", (key, body, crc))

    def _check(self) -> None:
        if self._broken is not None:
            raise RaftStorageError(f"raft storage {self.path} is unusable: {self._broken}")

    def _fail(self, exc: BaseException) -> RaftStorageError:
        self._broken = f"a write failed ({exc!r}); memory may be ahead of the file"
        return RaftStorageError(f"raft storage {self.path}: write failed: {exc}")


# --- loading and verification ----------------------------------------------------------------


def _load(path: Path, db: sqlite3.Connection) -> MemLog:
    try:
        db.execute("PRAGMA journal_mode=WAL")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            for stmt in _SCHEMA:
                db.execute(stmt)
            db.execute(
                "INSERT INTO meta VALUES ('format', ?, ?)", (FORMAT, _crc(b"format", FORMAT))
            )
            return MemLog()
        check = db.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise StorageCorrupted(path, f"SQLite quick_check: {check[0] if check else '?'}")
        return _verify(path, db)
    except sqlite3.Error as exc:
        raise StorageCorrupted(path, f"SQLite: {exc}") from exc


def _meta(path: Path, db: sqlite3.Connection) -> dict[str, bytes]:
    rows: dict[str, bytes] = {}
    # CAST: a damaged type tag must not turn a row into (undecodable) text.
    query = "SELECT CAST(key AS BLOB), CAST(body AS BLOB), crc FROM meta"
    for raw_key, body, crc in db.execute(query):
        key = bytes(raw_key or b"").decode(errors="replace")
        if not isinstance(body, bytes) or _crc(key.encode(), body) != crc:
            raise StorageCorrupted(path, f"checksum mismatch in meta row {key!r}")
        rows[key] = body
    if rows.get("format") != FORMAT:
        raise StorageCorrupted(path, f"unknown or missing format tag {rows.get('format')!r}")
    return rows


def _verify(path: Path, db: sqlite3.Connection) -> MemLog:
    meta = _meta(path, db)
    try:
        hs = decode(meta["hard_state"], HardState) if "hard_state" in meta else HardState()
        snap = decode(meta["snapshot"], Snapshot) if "snapshot" in meta else Snapshot()
        start = decode(meta["start"], Entry) if "start" in meta else Entry(term=0, index=0)
    except MessageDecodeError as exc:
        raise StorageCorrupted(path, f"meta: {exc}") from exc
    entries = _verified_entries(path, db, start)
    last = entries[-1] if entries else start
    if snap.index < start.index:
        raise StorageCorrupted(path, f"snapshot {snap.index} is before the log start {start.index}")
    if snap.index > last.index:
        raise StorageCorrupted(path, f"snapshot {snap.index} is past the last entry {last.index}")
    if not snap.is_empty:
        at = start if snap.index == start.index else entries[snap.index - start.index - 1]
        if at.term != snap.term:
            raise StorageCorrupted(
                path, f"snapshot term {snap.term} differs from the log's {at.term}", snap.index
            )
    if hs.commit > last.index:
        raise StorageCorrupted(
            path, f"hard state commit {hs.commit} is past the last entry {last.index}"
        )
    if hs.term < last.term:
        raise StorageCorrupted(path, f"hard state term {hs.term} is behind the log's {last.term}")
    if hs.commit < snap.index:
        # Commit-only updates are not synced; the snapshot proves its index committed.
        hs = HardState(term=hs.term, vote=hs.vote, commit=snap.index)
    return MemLog(hs, snap, start, entries)


def _verified_entries(path: Path, db: sqlite3.Connection, start: Entry) -> list[Entry]:
    entries: list[Entry] = []
    expected, term = start.index + 1, start.term
    query = "SELECT idx, CAST(body AS BLOB), crc FROM entries ORDER BY idx"
    for idx, body, crc in db.execute(query):
        if idx != expected:
            what = "missing" if idx > expected else "unexpected"
            raise StorageCorrupted(path, f"{what} entry (found index {idx})", expected)
        if not isinstance(body, bytes) or _crc(_entry_key(idx), body) != crc:
            raise StorageCorrupted(path, "checksum mismatch", idx)
        try:
            e = decode(body, Entry)
        except MessageDecodeError as exc:
            raise StorageCorrupted(path, str(exc), idx) from exc
        if e.index != idx or e.term < term:
            raise StorageCorrupted(path, f"entry says index {e.index} term {e.term}", idx)
        entries.append(e)
        expected, term = idx + 1, e.term
    return entries
