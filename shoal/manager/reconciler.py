"""The one shape of every leader-only reconciler (swarmkit's).

`run()` does a full pass, then waits for a store commit (or a wake-up the last pass asked
for) and does another full pass. Passes are level-triggered over the whole state, which at
shoal's scale (hundreds of tasks) costs microseconds and cannot miss an event.
"""

from __future__ import annotations

import asyncio
import logging
import time

from shoal.manager.state.store import Commit, Event, Store

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)


class Reconciler:
    name = "reconciler"
    # the kinds its passes read: commits that wrote none of them (a burst of secrets,
    # say) wake it not; None: every commit
    kinds: frozenset[str] | None = None

    def __init__(self, store: Store) -> None:
        self.store = store
        self._kick = asyncio.Event()

    async def reconcile(self) -> float | None:
        """One pass; returns seconds until the next pass is needed by time alone, if any."""
        raise NotImplementedError

    def kick(self) -> None:
        self._kick.set()

    async def run(self) -> None:
        queue = self.store.watch()
        try:
            while True:
                self._kick.clear()
                try:
                    wake = await self.reconcile()
                except Exception:
                    log.exception("%s: pass failed; retrying in 1s", self.name)
                    wake = 1.0
                deadline = None if wake is None else time.monotonic() + max(wake, 0.0)
                await self._wait(queue, deadline)
        finally:
            self.store.unwatch(queue)

    async def _wait(self, queue: asyncio.Queue[Event | Commit], deadline: float | None) -> None:
        touched = seen = False  # since the last commit: an event of `kinds`, any event
        while True:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            getter = asyncio.ensure_future(queue.get())
            kicker = asyncio.ensure_future(self._kick.wait())
            done, pending = await asyncio.wait(
                {getter, kicker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for fut in pending:
                fut.cancel()
            if not done or kicker in done:
                return
            items = [getter.result()]
            while not queue.empty():  # what else is queued: one look covers it all
                items.append(queue.get_nowait())
            for item in items:
                if not isinstance(item, Commit):
                    seen = True
                    touched = touched or self.kinds is None or item.kind in self.kinds
                elif touched or not seen:  # no events: a reloaded state
                    return
                else:
                    touched = seen = False
