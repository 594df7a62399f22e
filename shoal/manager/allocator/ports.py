"""Published-port allocation across the cluster: pure.

Ingress ports are cluster-wide (every node answers on them), so two services may not publish
the same port/protocol in ingress mode, and an ingress port may not collide with another
service's host-mode port. A published port of 0 gets a free one from Docker's dynamic range.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from shoal.api.types import EndpointPortConfig, Service
from shoal.errors import InvalidArgument

__all__ = ["DYNAMIC_RANGE", "allocate_ports"]

DYNAMIC_RANGE = range(30000, 32768)


def allocate_ports(
    service_id: str, ports: list[EndpointPortConfig], others: Iterable[Service]
) -> list[EndpointPortConfig]:
    """Resolve `ports` of `service_id` against the ports `others` hold; raise on conflict."""
    taken: dict[tuple[int, str], tuple[Service, str]] = {}
    for other in others:
        if other.id == service_id:
            continue
        for port in other.endpoint.ports or []:
            if port.published_port:
                key = (port.published_port, port.protocol or "tcp")
                taken[key] = (other, port.publish_mode or "ingress")
    out: list[EndpointPortConfig] = []
    mine: set[tuple[int, str]] = set()
    for port in ports:
        proto = port.protocol or "tcp"
        mode = port.publish_mode or "ingress"
        published = port.published_port
        if published == 0 and mode == "ingress":
            published = next(
                (p for p in DYNAMIC_RANGE if (p, proto) not in taken and (p, proto) not in mine),
                0,
            )
            if published == 0:
                raise InvalidArgument("no free port in the dynamic range 30000-32767")
        key = (published, proto)
        holder = taken.get(key)
        if published and holder is not None and (mode == "ingress" or holder[1] == "ingress"):
            other, other_mode = holder
            raise InvalidArgument(
                f"rpc error: code = InvalidArgument desc = port '{published}' is already in "
                f"use by service '{other.spec.name}' ({other.id}) as an {other_mode} port"
            )
        mine.add(key)
        out.append(
            msgspec.structs.replace(
                port, protocol=proto, publish_mode=mode, published_port=published
            )
        )
    return out
