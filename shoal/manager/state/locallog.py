"""A single-node `Log`: batches are committed by writing them durably to SQLite.

The state machine is persisted as one row per object (the batch's changes applied in one
SQLite transaction, synchronous=FULL, so a write acknowledged to a client survives a crash).
When Raft replaces this log for managers, the same `Store` runs unchanged on top of it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from shoal.manager.state.changes import KINDS, decode_batch
from shoal.manager.state.store import Store

__all__ = ["LocalLog"]


class LocalLog:
    def __init__(self, path: Path, store: Store) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects (kind TEXT, id TEXT, data BLOB,"
            " PRIMARY KEY (kind, id))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")
        self._store = store

    def restore(self) -> None:
        """Load the persisted state into the store."""
        objects: dict[str, list[Any]] = {kind: [] for kind in KINDS}
        for kind, data in self._db.execute("SELECT kind, data FROM objects"):
            objects[kind].append(msgspec.msgpack.decode(data, type=KINDS[kind]))
        row = self._db.execute("SELECT value FROM meta WHERE key='index'").fetchone()
        self._store.load(objects, row[0] if row else 0)

    async def propose(self, batch: bytes) -> None:
        # Applied first because the stored objects carry the version index that apply
        # assigns; the caller is only answered after the COMMIT below. A failed write
        # leaves memory ahead of disk, so it is fatal (the daemon exits and restores).
        self._store.apply(batch)
        changes = decode_batch(batch).changes
        view = self._store.view()
        cur = self._db.cursor()
        cur.execute("BEGIN")
        try:
            for change in changes:
                obj = view.get(change.kind, change.id)
                if obj is None:
                    cur.execute(
                        "DELETE FROM objects WHERE kind=? AND id=?", (change.kind, change.id)
                    )
                else:
                    cur.execute(
                        "INSERT OR REPLACE INTO objects VALUES (?, ?, ?)",
                        (change.kind, change.id, msgspec.msgpack.encode(obj)),
                    )
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('index', ?)", (self._store.index,))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
