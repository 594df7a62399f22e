"""The queue of broadcasts waiting to be piggybacked on outgoing packets.

Each broadcast is sent a bounded number of times (the caller passes the limit, lambda *
log(n)); the least-sent go first, so a fresh one spreads before old ones are repeated. A
broadcast replaces a queued one with the same key (news about the same member or the same
endpoint makes the older message pointless).
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.gossip.messages import Message, encoded_size

__all__ = ["BroadcastQueue"]

# msgpack's array header for a message list grows past 15 and 65535 items; count the worst
_LIST_OVERHEAD = 5


@dataclass
class _Item:
    key: tuple[str, ...]
    msg: Message
    size: int
    transmits: int
    order: int
    factor: int


class BroadcastQueue:
    def __init__(self) -> None:
        self._items: dict[tuple[str, ...], _Item] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._items)

    def queue(self, key: tuple[str, ...], msg: Message, factor: int = 1) -> None:
        """Queue `msg`, sent `factor` times as often as the limit says."""
        self._order += 1
        self._items[key] = _Item(key, msg, encoded_size(msg), 0, self._order, factor)

    def pending(self) -> list[Message]:
        return [i.msg for i in self._items.values()]

    def take(self, budget: int, limit: int) -> list[Message]:
        """Messages that fit in `budget` bytes, least-sent then newest first; each taken
        one counts a transmission and leaves the queue after `limit * factor` of them."""
        budget -= _LIST_OVERHEAD
        taken: list[Message] = []
        for item in sorted(self._items.values(), key=lambda i: (i.transmits, -i.order)):
            if item.size > budget:
                continue
            budget -= item.size
            taken.append(item.msg)
            item.transmits += 1
            if item.transmits >= limit * item.factor:
                del self._items[item.key]
        return taken
