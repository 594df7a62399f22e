"""The real docker CLI joins, inspects and removes a worker (issue 6's swarm/node commands
that need a second host)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.lab import Lab
from tests.integration.conftest import session_lab_tag
from tests.polling import until

pytestmark = pytest.mark.lab


def docker(lab: Lab, host: str, *args: str) -> str:
    proc = lab.exec(host, ["docker", *args], capture=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} on {host}: {proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="module")
def lab2() -> Iterator[Lab]:
    lab = Lab(session_lab_tag("j"))
    lab.down()
    try:
        lab.up(nodes=2, swarm=False)
        yield lab
    finally:
        lab.down()


def test_docker_swarm_join_node_ls_leave_and_rm(lab2: Lab) -> None:
    docker(lab2, "h1", "swarm", "init", "--advertise-addr", "198.18.0.11",
           "--default-addr-pool", "198.19.0.0/16")
    token = docker(lab2, "h1", "swarm", "join-token", "-q", "worker").strip()
    assert token.startswith("SWMTKN-1-")
    out = docker(lab2, "h2", "swarm", "join", "--token", token, "198.18.0.11:2377")
    assert "This node joined a swarm as a worker." in out
    rows = docker(lab2, "h1", "node", "ls", "--format", "{{.Hostname}} {{.Status}}").split("\n")
    assert sorted(r for r in rows if r) == ["shoal-h1 Ready", "shoal-h2 Ready"]
    info = docker(lab2, "h2", "info", "--format", "{{.Swarm.LocalNodeState}} "
                  "{{.Swarm.ControlAvailable}}")
    assert info.split() == ["active", "false"]
    # a worker refuses manager-only calls with Docker's words
    proc = lab2.exec("h2", ["docker", "service", "ls"], capture=True, timeout=30)
    assert proc.returncode != 0 and "not a swarm manager" in proc.stderr
    # a live node cannot be removed without --force
    proc = lab2.exec("h1", ["docker", "node", "rm", "shoal-h2"], capture=True, timeout=30)
    assert proc.returncode != 0
    assert "Node left the swarm." in docker(lab2, "h2", "swarm", "leave")
    until(lambda: "shoal-h2 Down" in docker(lab2, "h1", "node", "ls", "--format",
                                             "{{.Hostname}} {{.Status}}"))
    docker(lab2, "h1", "node", "rm", "shoal-h2")
    assert "shoal-h2" not in docker(lab2, "h1", "node", "ls")
