"""PURE: a node's view of the cluster network, from the store's objects.

Managers compute it from their store (for themselves, and in the dispatcher for every
worker's session); workers receive it. It holds:

* `peers`: every node with a task slice and an address (the overlay's peers; the gossip
  addresses to join),
* `data_path_port`: the overlay's UDP port (`--data-path-port`, 4789 by default),
* `keys`: the gossip keyring, primary first,
* `live`: the (node ID, task ID) of every task the managers hold as live — desired running
  and not yet terminal. The endpoint table is reconciled against it, so an entry the
  managers do not know (a task replaced while its node was cut off, an agent that died
  before withdrawing it) cannot outlive it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shoal.api.states import is_terminal
from shoal.api.types import Node, Swarm, Task

__all__ = ["DEFAULT_DATA_PATH_PORT", "NetPeer", "NetView", "live_tasks", "network_view"]

DEFAULT_DATA_PATH_PORT = 4789


@dataclass(frozen=True)
class NetPeer:
    node_id: str
    addr: str  # underlay (data path) address
    subnet: str  # the node's task slice
    gossip: str = ""  # "ip:port" of its gossip listener, "" while unknown


@dataclass(frozen=True)
class NetView:
    peers: tuple[NetPeer, ...] = ()
    data_path_port: int = DEFAULT_DATA_PATH_PORT
    keys: tuple[bytes, ...] = ()
    live: frozenset[tuple[str, str]] = frozenset()


def live_tasks(tasks: Iterable[Task]) -> frozenset[tuple[str, str]]:
    return frozenset(
        (t.node_id, t.id)
        for t in tasks
        if t.node_id and t.desired_state == "running" and not is_terminal(t.status.state)
    )


def network_view(
    nodes: Iterable[Node], clusters: Iterable[Swarm], tasks: Iterable[Task]
) -> NetView:
    peers = tuple(
        NetPeer(n.id, n.status.addr, n.subnet, n.gossip_addr)
        for n in sorted(nodes, key=lambda n: n.id)
        if n.subnet and n.status.addr not in ("", "0.0.0.0")
    )
    cluster = next(iter(clusters), None)
    port = (cluster.data_path_port if cluster is not None else 0) or DEFAULT_DATA_PATH_PORT
    keys = tuple(cluster.network_keys or ()) if cluster is not None else ()
    return NetView(peers, port, keys, live_tasks(tasks))
