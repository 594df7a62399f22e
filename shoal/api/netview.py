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
* `services`: each service's name, VIP ("" in dnsrr mode) and aliases per network it is
  attached to, so the embedded DNS knows a service's name before (or without) any of its
  tasks, and keeps knowing it while the managers have no quorum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shoal.api.states import is_terminal
from shoal.api.types import Node, Service, Swarm, Task

__all__ = [
    "DEFAULT_DATA_PATH_PORT", "NetPeer", "NetService", "NetView", "live_tasks",
    "network_view", "service_records",
]

DEFAULT_DATA_PATH_PORT = 4789


@dataclass(frozen=True)
class NetPeer:
    node_id: str
    addr: str  # underlay (data path) address
    subnet: str  # the node's task slice
    gossip: str = ""  # "ip:port" of its gossip listener, "" while unknown


@dataclass(frozen=True)
class NetService:
    """A service on one overlay network: what its name resolves to there."""

    service_id: str
    name: str
    network_id: str
    vip: str = ""  # without prefix length; "" in dnsrr mode
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetView:
    peers: tuple[NetPeer, ...] = ()
    data_path_port: int = DEFAULT_DATA_PATH_PORT
    keys: tuple[bytes, ...] = ()
    live: frozenset[tuple[str, str]] = frozenset()
    services: tuple[NetService, ...] = ()


def service_records(services: Iterable[Service]) -> tuple[NetService, ...]:
    out = []
    for service in services:
        vips = {str(v.get("NetworkID", "")): str(v.get("Addr", "")).split("/")[0]
                for v in service.endpoint.virtual_ips or [] if isinstance(v, dict)}
        template = service.spec.task_template
        attached = [*((template.networks if template is not None else None) or []),
                    *(service.spec.networks or [])]
        for attachment in attached:
            network_id = attachment.target
            if network_id:
                out.append(NetService(service.id, service.spec.name, network_id,
                                      vips.get(network_id, ""),
                                      tuple(attachment.aliases or ())))
    return tuple(sorted(out, key=lambda r: (r.network_id, r.name)))


def live_tasks(tasks: Iterable[Task]) -> frozenset[tuple[str, str]]:
    return frozenset(
        (t.node_id, t.id)
        for t in tasks
        if t.node_id and t.desired_state == "running" and not is_terminal(t.status.state)
    )


def network_view(
    nodes: Iterable[Node], clusters: Iterable[Swarm], tasks: Iterable[Task],
    services: Iterable[Service] = (),
) -> NetView:
    peers = tuple(
        NetPeer(n.id, n.status.addr, n.subnet, n.gossip_addr)
        for n in sorted(nodes, key=lambda n: n.id)
        if n.subnet and n.status.addr not in ("", "0.0.0.0")
    )
    cluster = next(iter(clusters), None)
    port = (cluster.data_path_port if cluster is not None else 0) or DEFAULT_DATA_PATH_PORT
    keys = tuple(cluster.network_keys or ()) if cluster is not None else ()
    return NetView(peers, port, keys, live_tasks(tasks), service_records(services))
