"""The leader's gossip key rotation (swarmkit's keymanager, for the endpoint gossip).

The keyring lives in the cluster object (`Swarm.network_keys`, primary first) and reaches
every node with its network view. The leader makes the first key when the swarm has none,
and every `interval` puts a fresh key first and keeps the previous ones up to `keep` in
all. Nodes install every key, seal with the first and open with any, so a rotation never
splits the cluster: nodes that already have the new key still read the old one's packets.
The timer restarts with each leadership, so a rotation may come late but never early.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from shoal.manager.reconciler import Reconciler
from shoal.manager.state.store import Store, Tx

__all__ = ["KEY_SIZE", "KeyManager", "rotate"]

log = logging.getLogger(__name__)

KEY_SIZE = 32  # AES-256-GCM


def rotate(keys: list[bytes], fresh: bytes, keep: int) -> list[bytes]:
    """PURE: `fresh` first, then the newest of the old ones, `keep` in all."""
    return [fresh, *[k for k in keys if k != fresh]][:keep]


class KeyManager(Reconciler):
    name = "keymanager"
    kinds = frozenset({"cluster"})

    def __init__(
        self,
        store: Store,
        interval: float = 12 * 3600.0,
        keep: int = 3,
        new_key: Callable[[], bytes] = lambda: secrets.token_bytes(KEY_SIZE),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(store)
        self.interval = interval
        self.keep = keep
        self._new_key = new_key
        self._clock = clock
        self._due: float | None = None  # clock time of the next rotation

    async def reconcile(self) -> float | None:
        clusters = self.store.view().list("cluster")
        if not clusters:
            return None
        if not clusters[0].network_keys:
            await self._write(first=True)
            return self.interval
        return await self._maybe_rotate()

    async def _maybe_rotate(self) -> float:
        now = self._clock()
        if self._due is None:
            self._due = now + self.interval
        if now >= self._due:
            await self._write(first=False)
            self._due = now + self.interval
        return max(self._due - now, 0.0)

    async def _write(self, first: bool) -> None:
        fresh = self._new_key()

        def fn(tx: Tx) -> None:
            cluster = tx.list("cluster")[0]
            keys = list(cluster.network_keys or [])
            if first and keys:
                return  # raced another pass
            cluster.network_keys = rotate(keys, fresh, self.keep)
            tx.update("cluster", cluster)

        await self.store.update(fn)
        log.info("keymanager: %s the gossip key", "made" if first else "rotated")
