"""PURE: every service's published ports as each node's mesh needs them.

One conversion for both kinds of node: the dispatcher sends these to workers (which have no
store) and a manager's mesh reads the same from its own store, so both program the same
ports with the same per-service options (traffic policy, health port, PROXY v2, name),
taken from the service labels leniently (the control API refused bad values already).
"""

from __future__ import annotations

from shoal.api.types import Service
from shoal.cluster.wire import PublishedPort
from shoal.mesh.policy import mesh_labels, proxy_protocol_ports

__all__ = ["published_ports"]


def published_ports(services: list[Service]) -> list[PublishedPort]:
    """Every published TCP/UDP port of every service, sorted by (protocol, port)."""
    out: list[PublishedPort] = []
    for service in services:
        labels = service.spec.labels
        options = mesh_labels(labels)
        proxied, _ = proxy_protocol_ports(labels)
        for port in service.endpoint.ports or []:
            if port.published_port and port.protocol in ("tcp", "udp"):
                out.append(
                    PublishedPort(
                        service.id,
                        port.protocol,
                        port.published_port,
                        port.target_port,
                        "host" if port.publish_mode == "host" else "ingress",
                        options.policy,
                        options.health_port,
                        (port.protocol, port.published_port) in proxied,
                        service.spec.name,
                    )
                )
    return sorted(out, key=lambda p: (p.protocol, p.published))
