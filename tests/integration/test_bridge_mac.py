"""A node bridge keeps one MAC while task veths come and go (real kernel, own namespace).

A Linux bridge without a set address takes the lowest MAC among its ports; when a task's
veth joins or leaves, every other task on the bridge holds a stale gateway MAC in its ARP
cache and its packets off the bridge are lost until it re-resolves. `ensure_bridge` pins the
MAC. Namespace `shoal-brmac-<hex>` is this test's own and goes in the finalizer.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.agent.exec.netsetup import bridge_mac

REPO = Path(__file__).resolve().parents[2]
GATEWAY = "198.18.9.1/24"
DRIVE = """
import asyncio, ipaddress, sys
from shoal.agent.exec.netsetup import ensure_bridge
asyncio.run(ensure_bridge(sys.argv[1], ipaddress.IPv4Interface(sys.argv[2])))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"shoal-brmac-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _in(ns: str, *argv: str) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ.get("PATH", ""),
                                           "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _mac(ns: str, link: str) -> str:
    shown = json.loads(_in(ns, "ip", "-j", "link", "show", "dev", link))
    return str(shown[0]["address"])


def _ensure(ns: str, bridge: str) -> None:
    _in(ns, sys.executable, "-c", DRIVE, bridge, GATEWAY)


def test_bridge_mac_is_fixed_and_stays_while_ports_come_and_go(netns: str) -> None:
    want = bridge_mac("sn-brmac", ipaddress.IPv4Interface(GATEWAY))
    assert int(want.split(":")[0], 16) & 0b11 == 0b10  # locally administered, unicast
    _ensure(netns, "sn-brmac")
    assert _mac(netns, "sn-brmac") == want
    # a port with a MAC lower than the bridge's, then a second one, then both gone
    for name, mac in (("p1", "00:00:5e:00:53:01"), ("p2", "00:00:5e:00:53:00")):
        _in(netns, "ip", "link", "add", name, "address", mac, "type", "veth",
            "peer", "name", name + "x")
        _in(netns, "ip", "link", "set", name, "master", "sn-brmac", "up")
        assert _mac(netns, "sn-brmac") == want
    for name in ("p2", "p1"):
        _in(netns, "ip", "link", "del", name)
        assert _mac(netns, "sn-brmac") == want


def test_a_bridge_made_without_a_mac_gets_the_fixed_one(netns: str) -> None:
    _in(netns, "ip", "link", "add", "sn-old", "type", "bridge")
    _ensure(netns, "sn-old")
    assert _mac(netns, "sn-old") == bridge_mac("sn-old", ipaddress.IPv4Interface(GATEWAY))
    _ensure(netns, "sn-old")  # idempotent
    assert _mac(netns, "sn-old") == bridge_mac("sn-old", ipaddress.IPv4Interface(GATEWAY))


def test_bridge_macs_differ_by_bridge_and_gateway() -> None:
    a = ipaddress.IPv4Interface("198.18.1.1/24")
    b = ipaddress.IPv4Interface("198.18.2.1/24")
    assert len({bridge_mac("sn-a", a), bridge_mac("sn-b", a), bridge_mac("sn-a", b)}) == 3
