"""A store on a local (one-replica) log in a test's tmp dir: what the manager tests write to."""

from __future__ import annotations

from pathlib import Path

from shoal.manager.state.locallog import LocalLog
from shoal.manager.state.store import Store


def local_store(tmp_path: Path) -> Store:
    store = Store()
    log = LocalLog(tmp_path / "state.db", store)
    log.restore()
    store.attach(log)
    return store
