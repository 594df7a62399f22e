"""The endpoint table: which task of which service runs where, at which address, ready or not.

Each node owns the entries of its local tasks. Today the table holds this node's entries
(and, on a manager, is fed from the store); the gossip layer will merge every node's entries
into it. Readers wait on `changed()` and read `entries()`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = ["EndpointEntry", "EndpointTable"]


@dataclass(frozen=True)
class EndpointEntry:
    service_id: str
    task_id: str
    node_id: str
    address: str
    ready: bool


class EndpointTable:
    def __init__(self) -> None:
        self._entries: dict[str, EndpointEntry] = {}
        self._version = 0
        self._event = asyncio.Event()

    @property
    def version(self) -> int:
        return self._version

    def entries(self) -> list[EndpointEntry]:
        return list(self._entries.values())

    def set(self, entry: EndpointEntry) -> None:
        if self._entries.get(entry.task_id) != entry:
            self._entries[entry.task_id] = entry
            self._bump()

    def remove(self, task_id: str) -> None:
        if self._entries.pop(task_id, None) is not None:
            self._bump()

    def _bump(self) -> None:
        # wake every waiter of the current generation, start a new one
        self._version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait_change(self, seen: int) -> int:
        while self._version == seen:
            await self._event.wait()
        return self._version
