"""Raft member IDs from swarm node IDs.

Raft IDs are positive integers below 2**63 (the core's wire type); node IDs are 25-char
base-36 strings. The mapping is a hash, so every manager derives the same Raft ID from a
node ID with no state to keep or hand out, and a message's sender can be checked against
the node ID in the caller's certificate (`raft_id(cert node ID) == message.from_`).
A collision between two managers of one swarm would need 2**31 managers on average.
"""

from __future__ import annotations

import hashlib

__all__ = ["raft_id"]

_MASK = (1 << 63) - 1


def raft_id(node_id: str) -> int:
    """The Raft ID of the manager whose swarm node ID is `node_id` (never 0)."""
    digest = hashlib.sha256(b"shoal-raft-id:" + node_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") & _MASK or 1
