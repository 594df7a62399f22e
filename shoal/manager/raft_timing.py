"""A manager's Raft member follows SwarmSpec.Raft live.

Every manager applies the cluster object through Raft, so watching its own store is
enough: after each commit (and after a snapshot replaced the store, a bare Commit) the
driver's settings are recomputed from the spec (`config_for`) and handed to
`RaftNode.reconfigure` when they differ. All managers thus switch to a new tick interval,
election and heartbeat ticks, snapshot interval and kept tail within one commit of each
other, without a restart. Timing never affects Raft's safety, only when elections start,
so managers briefly disagreeing about it is harmless.
"""

from __future__ import annotations

import dataclasses
import logging

from shoal.errors import InvalidArgument
from shoal.manager.raft import LIVE_FIELDS, RaftNode, RaftNodeConfig
from shoal.manager.raft_open import config_for
from shoal.manager.state.store import Store, commit_of

__all__ = ["follow_raft_spec", "wanted_config"]

log = logging.getLogger(__name__)
_SPEC_KINDS = frozenset({"cluster"})  # the swarm spec's Raft part lives there


def wanted_config(store: Store, current: RaftNodeConfig, default_tick: float) -> RaftNodeConfig:
    """`current` with the live fields the cluster's spec asks for."""
    spec = config_for(store, default_tick)
    return dataclasses.replace(current, **{f: getattr(spec, f) for f in LIVE_FIELDS})


def _retune(store: Store, node: RaftNode, default_tick: float) -> None:
    wanted = wanted_config(store, node.config, default_tick)
    if wanted == node.config:
        return
    try:
        node.reconfigure(wanted)
    except InvalidArgument as exc:  # validated by the control API; an old or odd spec
        log.warning("raft: keeping %s: %s", node.config.describe(), exc.message)


async def follow_raft_spec(store: Store, node: RaftNode, default_tick: float) -> None:
    """Run until cancelled: keep `node`'s live settings equal to the spec's."""
    queue = store.watch()
    try:
        _retune(store, node, default_tick)  # in the step that subscribed: nothing missed
        while True:
            await commit_of(queue, _SPEC_KINDS)
            _retune(store, node, default_tick)
    finally:
        store.unwatch(queue)
