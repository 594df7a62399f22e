"""Opening a manager's Raft storage: bootstrap, migration from LocalLog, force-new-cluster.

`swarm/raft.db` (SQLiteStorage) is the manager's durable state. Which way it is opened:

* it exists: reopened as is (a restart);
* it does not, but `swarm/state.db` does (a data root made by the single-manager LocalLog of
  earlier shoal versions): the LocalLog's objects become the snapshot this manager
  bootstraps its one-voter cluster from, so nothing is lost; state.db is renamed
  `state.db.migrated` (kept, never read again);
* neither, founding (`swarm init`): a one-voter cluster with an empty store;
* neither, joining: empty storage; the leader sends a snapshot once it adds us.

`force_new_cluster` rewrites raft.db as a one-voter cluster of this manager, keeping every
committed write (swarm's `--force-new-cluster`): the old file is kept as raft.db.old.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from shoal.api.types import Swarm
from shoal.manager.raft.config import RaftNodeConfig
from shoal.manager.raft.ids import raft_id
from shoal.manager.raft.snapshot import encode_store, load_store
from shoal.manager.raft.storage import SQLiteStorage
from shoal.manager.state.locallog import LocalLog
from shoal.manager.state.store import Store
from shoal.raft import ConfState, EntryType, HardState, Snapshot, SnapshotMetadata

__all__ = ["config_for", "force_new_cluster", "open_storage", "replay"]

log = logging.getLogger(__name__)

RAFT_DB = "raft.db"
LOCAL_DB = "state.db"


def open_storage(swarm_dir: Path, node_id: str, *, founding: bool) -> SQLiteStorage:
    swarm_dir.mkdir(parents=True, exist_ok=True)
    path = swarm_dir / RAFT_DB
    existed = path.exists()
    storage = SQLiteStorage.open(path)
    if existed and not storage.is_empty:
        return storage
    legacy = swarm_dir / LOCAL_DB
    if legacy.exists():
        data = _legacy_snapshot(legacy)
        storage.bootstrap((raft_id(node_id),), data=data)
        os.replace(legacy, legacy.with_name(LOCAL_DB + ".migrated"))
        log.info("raft: migrated the single-manager state in %s into %s", legacy, path)
    elif founding:
        storage.bootstrap((raft_id(node_id),))
    return storage


def _legacy_snapshot(path: Path) -> bytes:
    store = Store()
    local = LocalLog(path, store)
    try:
        local.restore()
    finally:
        local.close()
    return encode_store(store)


def replay(storage: SQLiteStorage, store: Store) -> tuple[int, int]:
    """Load `storage`'s snapshot and committed entries into `store` (no events); the
    (index, term) of the last committed entry."""
    snap = storage.snapshot()
    load_store(store, snap.data)
    index, term = snap.index, snap.metadata.term
    commit = min(storage.hard_state.commit, storage.last_index())
    if commit > index:
        for e in storage.entries(index + 1, commit + 1, None):
            if e.type is EntryType.NORMAL and e.data:
                store.apply(e.data)
            index, term = e.index, e.term
    return index, term


def config_for(store: Store, tick: float) -> RaftNodeConfig:
    """The driver's settings from SwarmSpec.Raft (tick interval, election and heartbeat
    ticks, snapshot interval, kept tail); `tick` (seconds) when the spec has no tick."""
    clusters: list[Swarm] = store.view().clusters.list()
    raft = clusters[0].spec.raft if clusters else None
    if raft is None:
        return RaftNodeConfig(tick_interval=tick)
    if raft.tick_interval > 0:
        tick = raft.tick_interval / 1e9
    election = raft.election_tick or 10
    heartbeat = raft.heartbeat_tick or 1
    if election <= heartbeat:
        log.warning("raft: ElectionTick %d <= HeartbeatTick %d; using 10/1", election, heartbeat)
        election, heartbeat = 10, 1
    return RaftNodeConfig(
        tick_interval=tick,
        election_tick=election,
        heartbeat_tick=heartbeat,
        snapshot_every=raft.snapshot_interval or 10_000,
        keep_tail=raft.log_entries_for_slow_followers or 500,
    )


def force_new_cluster(swarm_dir: Path, node_id: str) -> None:
    """Make raft.db a one-voter cluster of `node_id` with every committed write kept."""
    path = swarm_dir / RAFT_DB
    old = SQLiteStorage.open(path)
    store = Store()
    try:
        index, term = replay(old, store)
        term = max(term, old.hard_state.term) + 1
    finally:
        old.close()
    backup = path.with_name(RAFT_DB + ".old")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(backup) + suffix))
    fresh = SQLiteStorage.open(path)
    try:
        meta = SnapshotMetadata(index=index, term=term, conf_state=ConfState((raft_id(node_id),)))
        fresh.save(
            snapshot=Snapshot(metadata=meta, data=encode_store(store)),
            hard_state=HardState(term=term, commit=index),
            sync=True,
        )
    finally:
        fresh.close()
    log.warning(
        "raft: forced a new cluster of this manager alone at index %d (old log kept in %s)",
        index, backup,
    )
