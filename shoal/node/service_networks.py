"""The node's service-network side: embedded DNS and the networks' data plane, attached to
its `NodeNetwork` (which runs them with its other loops). The daemon calls `attach` once."""

from __future__ import annotations

from pathlib import Path

from shoal.agent.dns.server import node_dns
from shoal.agent.svcnet.apply import ServiceNetworks
from shoal.node.network import NodeNetwork

__all__ = ["attach"]


def attach(network: NodeNetwork, runtime: object) -> None:
    """Give `network` its DNS and service networks, for a runtime with named netns."""
    network.dns = node_dns(network.node_id, network.endpoints, runtime)
    netns_dir = getattr(runtime, "netns_dir", None)
    netns_name = getattr(runtime, "netns_name", None)
    if network.dns is None or not isinstance(netns_dir, Path) or not callable(netns_name):
        return

    def slices() -> dict[str, str]:
        view = network.net_view()
        return {p.node_id: p.subnet for p in view.peers} if view is not None else {}

    network.svcnet = ServiceNetworks(
        network.node_id, network.endpoints, slices, lambda t: netns_dir / str(netns_name(t))
    )
