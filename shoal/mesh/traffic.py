"""PURE: the routing mesh's traffic counters per published port, and how the kernel keeps them.

`PortTraffic` is what both data planes report (`traffic()`): connections (TCP connections,
UDP flows) and bytes, both directions, since the port was opened on this node.

The kernel mesh counts in nftables, without a rule per port: four sets with a counter per
element (`type inet_service; counter;`), one element per planned port, open or refused, so
a port's counters survive its backends coming and going:

    traffic-tcp / traffic-udp   every packet of a flow the mesh DNAT'd: bytes, both ways
    flows-tcp   / flows-udp     the first packet of each such flow: connections

The lookups key on `ct original proto-dst` (the published port, before DNAT) of flows with
`ct status dnat`, in the filter hooks that see them: forward (clients elsewhere, or tasks
hairpinning), output (this node's own clients' packets) and input (the replies to them).
A scrape reads them all with one `nft -j list table` (`parse_counters`). No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COUNTER_SPEC",
    "PROTOCOLS",
    "PortTraffic",
    "counter_elements",
    "counter_sets",
    "counting_rules",
    "parse_counters",
]

PROTOCOLS = ("tcp", "udp")
COUNTER_SPEC = "type inet_service; counter;"
_BYTES, _FLOWS = "traffic", "flows"


@dataclass(frozen=True)
class PortTraffic:
    connections: int = 0  # TCP connections / UDP flows started through the port
    bytes: int = 0  # both directions, L3 lengths in the kernel, payload in userspace

    def __add__(self, other: PortTraffic) -> PortTraffic:
        return PortTraffic(self.connections + other.connections, self.bytes + other.bytes)


def counter_sets() -> tuple[str, ...]:
    """The names of the counting sets, sorted."""
    return tuple(sorted(f"{kind}-{proto}" for kind in (_BYTES, _FLOWS) for proto in PROTOCOLS))


def counter_elements(name: str, ports: Iterable[tuple[str, int]]) -> tuple[tuple[str, str], ...]:
    """The elements of counting set `name` for the (protocol, published) ports planned."""
    proto = name.rpartition("-")[2]
    return tuple(sorted((str(port), "") for p, port in ports if p == proto))


def counting_rules(hook: str) -> tuple[str, ...]:
    """The counting rules of the filter chain on `hook` (forward, output or input)."""
    flows = () if hook == "input" else tuple(  # a flow never starts with a reply
        f"ct state new ct status dnat meta l4proto {p} ct original proto-dst @{_FLOWS}-{p}"
        for p in PROTOCOLS)
    octets = tuple(f"ct status dnat meta l4proto {p} ct original proto-dst @{_BYTES}-{p}"
                   for p in PROTOCOLS)
    return flows + octets


def _elements(doc: Any) -> Iterable[tuple[str, int, int, int]]:
    """(set name, port, packets, bytes) of every counted element in `nft -j list` output."""
    for item in doc.get("nftables", []) if isinstance(doc, dict) else []:
        found = item.get("set") if isinstance(item, dict) else None
        if not isinstance(found, dict) or found.get("name") not in counter_sets():
            continue
        for elem in found.get("elem", []):
            inner = elem.get("elem", {}) if isinstance(elem, dict) else {}
            counter = inner.get("counter") if isinstance(inner, dict) else None
            port = inner.get("val") if isinstance(inner, dict) else None
            if isinstance(port, int) and isinstance(counter, dict):
                yield found["name"], port, int(counter.get("packets", 0)), int(
                    counter.get("bytes", 0))


def parse_counters(text: str) -> dict[tuple[str, int], PortTraffic]:
    """Per (protocol, published port): the counters in `nft -j list table` output (a flows
    set counts one packet per flow: its packets are the connections)."""
    try:
        doc = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    out: dict[tuple[str, int], PortTraffic] = {}
    for name, port, packets, octets in _elements(doc):
        kind, _, proto = name.partition("-")
        add = PortTraffic(bytes=octets) if kind == _BYTES else PortTraffic(connections=packets)
        out[(proto, port)] = out.get((proto, port), PortTraffic()) + add
    return out
