"""The node's service-network side: embedded DNS and the networks' data plane, attached to
its `NodeNetwork` (which runs them with its other loops). The daemon calls `attach` once.

It also hooks the runtime's start: once a task's netns is plumbed and before its program
runs, a task already in the endpoint table as `starting` gets its interfaces and its
127.0.0.11 sockets, so an application that resolves a name at once finds the server."""

from __future__ import annotations

import logging
from pathlib import Path

from shoal import timeouts
from shoal.agent.dns.server import node_dns
from shoal.agent.svcnet.apply import ServiceNetworks
from shoal.api.netview import NetService
from shoal.node.network import NodeNetwork

__all__ = ["PREPARE_TIMEOUT", "attach"]

log = logging.getLogger(__name__)
PREPARE_TIMEOUT = 5.0  # a start never waits longer on the service networks than this


def attach(network: NodeNetwork, runtime: object) -> None:
    """Give `network` its DNS and service networks, for a runtime with named netns."""
    def services() -> tuple[NetService, ...]:
        view = network.followed
        return view.services if view is not None else ()

    network.dns = node_dns(network.node_id, network.endpoints, runtime, services)
    netns_dir = getattr(runtime, "netns_dir", None)
    netns_name = getattr(runtime, "netns_name", None)
    if network.dns is None or not isinstance(netns_dir, Path) or not callable(netns_name):
        return

    def slices() -> dict[str, str]:
        view = network.net_view()
        return {p.node_id: p.subnet for p in view.peers} if view is not None else {}

    svcnet = network.svcnet = ServiceNetworks(
        network.node_id, network.endpoints, slices, lambda t: netns_dir / str(netns_name(t))
    )
    dns = network.dns

    async def prepare(task_id: str) -> None:
        if not any(e.task_id == task_id and e.node_id == network.node_id and e.networks
                   for e in network.endpoints.entries()):
            return
        await svcnet.apply()
        await dns.sync()

    async def netns_ready(task_id: str) -> None:
        try:
            await timeouts.wait_for(prepare(task_id), PREPARE_TIMEOUT)
        except Exception:  # the loops retry; the task starts either way
            log.exception("service networks: task %s not prepared before its start", task_id)

    if hasattr(runtime, "netns_ready"):
        runtime.netns_ready = netns_ready
