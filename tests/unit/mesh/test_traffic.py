"""The mesh's traffic counters: which ports the kernel plan counts, and reading them back."""

from __future__ import annotations

import json

from shoal.mesh.plan import render, transaction
from shoal.mesh.traffic import PortTraffic, counting_rules, parse_counters

from .test_plan import DNS, EMPTY, HOST, SAMPLE, WEB, elements, ep, rules, state


def test_every_planned_port_open_or_refused_is_counted_in_its_protocols_sets() -> None:
    rs = render(SAMPLE)
    for name in ("traffic-tcp", "flows-tcp"):
        # web 8080 (open), idle 9090 (refused: no ready task), hosted 8081 (a local task)
        assert elements(rs, name) == {"8080": "", "8081": "", "9090": ""}
    for name in ("traffic-udp", "flows-udp"):
        assert elements(rs, name) == {"53": ""}


def test_the_filter_hooks_look_the_ports_up_with_their_original_destination() -> None:
    rs = render(SAMPLE)
    assert rules(rs, "filter-forward") == counting_rules("forward")
    assert rules(rs, "filter-output") == counting_rules("output")
    assert rules(rs, "filter-input")[1:] == counting_rules("input")
    assert all("@traffic-" in r for r in counting_rules("input"))  # replies start no flow
    assert sum("ct state new" in r for r in counting_rules("forward")) == 2


def test_an_endpoint_change_leaves_the_counters_alone() -> None:
    before = render(SAMPLE)
    after = render(state(list(SAMPLE.ports), [*SAMPLE.endpoints, ep("web", "t9", "198.19.1.9")]))
    assert "traffic-" not in transaction(before, after)
    assert "flows-" not in transaction(before, after)
    # the last task of a port going away refuses the port; its counters stay
    drained = render(state([WEB, DNS, EMPTY, HOST], [ep("hosted", "h1", "198.19.1.20")]))
    assert "traffic-" not in transaction(before, drained)


def _nft_json(sets: dict[str, list[tuple[int, int, int]]]) -> str:
    """`nft -j list table` as nft 1.0.6 prints it, with only the sets that matter here."""
    items: list[object] = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
                           {"table": {"family": "inet", "name": "shoal", "handle": 7}},
                           {"set": {"family": "inet", "name": "refused", "table": "shoal",
                                    "type": ["inet_proto", "inet_service"], "handle": 3}}]
    for name, elems in sets.items():
        items.append({"set": {
            "family": "inet", "name": name, "table": "shoal", "type": "inet_service",
            "handle": 1, "stmt": [{"counter": None}],
            "elem": [{"elem": {"val": port, "counter": {"packets": packets, "bytes": octets}}}
                     for port, packets, octets in elems]}})
    return json.dumps({"nftables": items})


def test_parse_counters_takes_connections_from_flows_and_bytes_from_traffic() -> None:
    text = _nft_json({
        "flows-tcp": [(8080, 6, 360), (9090, 0, 0)],
        "traffic-tcp": [(8080, 60, 4800), (9090, 0, 0)],
        "flows-udp": [(53, 4, 128)],
        "traffic-udp": [(53, 8, 256)],
    })
    assert parse_counters(text) == {
        ("tcp", 8080): PortTraffic(connections=6, bytes=4800),
        ("tcp", 9090): PortTraffic(),
        ("udp", 53): PortTraffic(connections=4, bytes=256),
    }


def test_parse_counters_of_nothing_or_garbage_is_empty() -> None:
    assert parse_counters("") == {}
    assert parse_counters("not json") == {}
    assert parse_counters('{"nftables": [{"set": {"name": "traffic-tcp", "elem": [7]}}]}') == {}
    assert parse_counters(_nft_json({"ports": [(8080, 1, 1)]})) == {}
