"""PURE: the overlay's peers from the store's `Node` objects (what a manager knows).

A node is a peer once it has a task slice (`Node.subnet`, given by the allocator) and a
data path address (`Node.status.addr`). Its state does not matter: entries towards a node
that is down cost nothing and work again the moment it is back; `node rm` (the node leaves
the store) is what removes them. Nodes that cannot be peers are returned apart, with the
reason, for the caller to log.
"""

from __future__ import annotations

from collections.abc import Iterable

from shoal.api.types import Node
from shoal.errors import InvalidArgument
from shoal.mesh.overlay.model import OverlayPeer

__all__ = ["peers_from_nodes"]


def peers_from_nodes(nodes: Iterable[Node]) -> tuple[list[OverlayPeer], list[str]]:
    """(peers sorted by node ID, reasons for the nodes left out). This node may be among
    `nodes`: `Overlay.apply` skips its own entry."""
    peers: list[OverlayPeer] = []
    skipped: list[str] = []
    for node in sorted(nodes, key=lambda n: n.id):
        if not node.subnet or node.status.addr in ("", "0.0.0.0"):
            continue  # not allocated or not connected yet: nothing to reach
        try:
            peers.append(OverlayPeer(node.id, node.status.addr, node.subnet))
        except InvalidArgument as exc:
            skipped.append(exc.message)
    return peers, skipped
