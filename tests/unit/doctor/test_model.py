from __future__ import annotations

import pytest

from shoal.doctor.model import (
    ADVICE,
    DOWN_ADVICE,
    DoctorReport,
    PeerReport,
    ProbeResult,
    render_table,
    verdict,
)
from shoal.errors import InvalidArgument
from shoal.lab.firewall import parse_port_proto


def test_a_verdict_is_ok_slow_or_blocked() -> None:
    assert verdict("7946/udp", 0.01).state == "ok"
    assert verdict("7946/udp", 0.9).state == "slow"
    assert verdict("7946/udp", None, "no ack").state == "blocked"


def test_the_table_names_the_blocked_port_and_what_to_open() -> None:
    peer = PeerReport("n2", "h2", "198.18.0.12", [
        ProbeResult("2377/tcp", "n/a"), verdict("7946/tcp", 0.002),
        verdict("7946/udp", 0.001), verdict("4789/udp", None, "no answer"),
        ProbeResult("mtu", "n/a"),
    ])
    report = DoctorReport("n1", "h1", "198.18.0.11", [peer])
    text = render_table(report)
    assert text.splitlines()[0].split() == [
        "NODE", "ADDRESS", "2377/TCP", "7946/TCP", "7946/UDP", "4789/UDP", "MTU"]
    assert "h2 4789/udp blocked (no answer): " + ADVICE["4789/udp"] in text
    assert "security-group rule for UDP port 4789" in text
    assert [(p.hostname, r.port) for p, r in report.blocked] == [("h2", "4789/udp")]


def _silent(down: bool, answering: tuple[str, ...] = ()) -> PeerReport:
    return PeerReport("n3", "h3", "198.18.0.13", [
        verdict(port, 0.01 if port in answering else None, "no answer")
        for port in ("2377/tcp", "7946/tcp", "7946/udp", "4789/udp")
    ] + [ProbeResult("mtu", "n/a")], down=down)


def test_a_down_node_that_answers_nothing_is_called_off_not_firewalled() -> None:
    report = DoctorReport("n1", "h1", "198.18.0.11", [_silent(down=True)])
    text = render_table(report)
    assert text.splitlines()[1].startswith("h3 (down)")
    assert f"h3 {DOWN_ADVICE}" in text and "security-group" not in text
    assert len(report.blocked) == 4  # it still fails the doctor


def test_a_down_node_answering_some_ports_gets_the_port_advice() -> None:
    partly = render_table(DoctorReport("n1", "h1", "a", [_silent(True, ("7946/tcp",))]))
    assert DOWN_ADVICE not in partly
    assert "h3 2377/tcp blocked (no answer): " + ADVICE["2377/tcp"] in partly
    # not known down (a worker's doctor, or a node the managers still see): the port advice
    up = render_table(DoctorReport("n1", "h1", "a", [_silent(down=False)]))
    assert DOWN_ADVICE not in up and ADVICE["4789/udp"] in up


@pytest.mark.parametrize("bad", ["4789", "4789/icmp", "0/udp", "70000/tcp", "udp/4789"])
def test_the_lab_refuses_a_bad_port(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_port_proto(bad)
    assert parse_port_proto("4789/UDP") == (4789, "udp")
