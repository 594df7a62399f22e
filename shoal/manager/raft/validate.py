"""What the driver refuses from a peer before the core sees it.

The codec (`decode_message`) already refuses garbage, oversized frames and inconsistent
AppendEntries; these checks repeat the structural ones for messages a transport hands
over already decoded, and add the ones that depend on the receiving node.
"""

from __future__ import annotations

from shoal.raft import NONE, Message, MessageType
from shoal.raft.messages import LOCAL_MESSAGES

__all__ = ["message_size", "refusal"]


def message_size(m: Message) -> int:
    size = sum(len(e.data) + 16 for e in m.entries) + len(m.context)
    if m.snapshot is not None:
        size += len(m.snapshot.data)
    return size


def refusal(m: Message, node_id: int, max_bytes: int) -> str | None:
    """Why `m` must be dropped, or None if the core may step it."""
    if m.type in LOCAL_MESSAGES:
        return f"local message type {m.type.name} is never sent by a peer"
    if m.from_ == NONE or m.from_ == node_id:
        return f"bad sender {m.from_:x}"
    if m.to != node_id:
        return f"addressed to {m.to:x}"
    if message_size(m) > max_bytes:
        return f"{message_size(m)} bytes exceed the {max_bytes}-byte limit"
    expected = m.index + 1
    for e in m.entries:
        if m.type is MessageType.APP and (e.index != expected or e.term > m.term):
            return f"entries not contiguous after {m.index} or past term {m.term}"
        expected = e.index + 1
    return None
