"""A store on a local (one-replica) log in a test's tmp dir: what the manager tests write to."""

from __future__ import annotations

from pathlib import Path

import msgspec

from shoal.manager.state.changes import KINDS
from shoal.manager.state.locallog import LocalLog
from shoal.manager.state.store import Store


def local_store(tmp_path: Path) -> Store:
    store = Store()
    log = LocalLog(tmp_path / "state.db", store)
    log.restore()
    store.attach(log)
    return store


Snapshot = list[tuple[object, bytes]]


def committed(store: Store) -> Snapshot:
    """Every committed object with its encoding now (passes work on shallow copies of them:
    `Tx.scan`), for `assert_untouched` after a pass."""
    view = store.view()
    return [(obj, msgspec.msgpack.encode(obj)) for kind in KINDS for obj in view.list(kind)]


def assert_untouched(before: Snapshot) -> None:
    """No committed object of `before` was changed in place (a pass must clone first)."""
    changed = [obj for obj, raw in before if msgspec.msgpack.encode(obj) != raw]
    assert not changed, f"committed objects changed in place: {changed[:3]}"
