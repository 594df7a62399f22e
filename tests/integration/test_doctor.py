"""shoal doctor in a lab: `shoal lab block` plays the security group on one host, and the
doctor, run on every host, names exactly that host's port as blocked; unblocked, all clear.

The issue's acceptance: 5 nodes, h4 blocked on each of the four cluster ports in turn. h4 is
a manager (4 managers, h5 a worker) so that its 2377/tcp is probed too; the doctor runs on
every host, so h4's own view and a worker's view are checked as well as the others'."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.lab import Lab
from tests.integration.conftest import session_lab_tag
from tests.integration.labtools import shoal, until

HOSTS = ("h1", "h2", "h3", "h4", "h5")


@pytest.fixture(scope="module")
def lab5() -> Iterator[Lab]:
    lab = Lab(session_lab_tag("d"))
    lab.down()
    try:
        lab.up(nodes=len(HOSTS), managers=4)
        yield lab
    finally:
        lab.down()


def lab_cli(lab: Lab, *args: str) -> None:
    env = {**os.environ, "SHOAL_LAB_TAG": lab.layout.tag}
    proc = subprocess.run([sys.executable, "-m", "shoal", "lab", *args], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


def doctor(lab: Lab, host: str) -> tuple[int, dict[str, Any]]:
    proc = shoal(lab, "doctor", "--format", "json", "--timeout", "1", host=host, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def blocked(report: dict[str, Any]) -> set[tuple[str, str]]:
    """(lab host, port) of every blocked probe (a worker knows its peers by address only)."""
    host_at = {f"198.18.0.{10 + i}": f"h{i}" for i in range(1, len(HOSTS) + 1)}
    return {(host_at[p["addr"]], r["port"])
            for p in report["peers"] for r in p["results"] if r["state"] == "blocked"}


def _clean(lab: Lab, host: str) -> bool:
    rc, report = doctor(lab, host)
    states = {r["port"]: r["state"] for p in report["peers"] for r in p["results"]}
    return rc == 0 and not blocked(report) and states.get("4789/udp") == "ok"


def test_the_doctor_is_clean_on_every_host(lab5: Lab) -> None:
    for host in HOSTS:
        until(lambda h=host: _clean(lab5, h), 30, f"a clean doctor on {host}")
    table = shoal(lab5, "doctor", host="h3").stdout
    assert "2377/TCP" in table and "4789/UDP" in table and "blocked" not in table


# (blocked host, port): what each host's doctor must report, and nothing else
CASES = [("h4", "4789/udp"), ("h4", "7946/udp"), ("h4", "7946/tcp"), ("h4", "2377/tcp")]


@pytest.mark.parametrize(("target", "port"), CASES)
def test_the_doctor_names_exactly_the_blocked_port(lab5: Lab, target: str, port: str) -> None:
    lab_cli(lab5, "block", target, port)
    try:
        for host in HOSTS:
            rc, report = doctor(lab5, host)
            found = blocked(report)
            assert rc == 1, (host, report)
            assert {p for _, p in found} == {port}, (host, found)
            if host == target:  # the node's own row names it (TCP) or every peer does (UDP)
                assert (target, port) in found or len(found) == len(HOSTS) - 1, (host, found)
            else:
                assert found == {(target, port)}, (host, found)
    finally:
        lab_cli(lab5, "unblock", target, port)
    for host in ("h1", "h4"):
        until(lambda h=host: _clean(lab5, h), 30, f"a clean doctor on {host} after unblock")
