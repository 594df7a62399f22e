"""The "local" traffic policy in a 3-node lab, with each data plane: a node routes a local
service's published port only to its own ready tasks (the client keeps its address), a node
without one refuses, and every node's health port says which is which.

    service web: shoal.mesh.traffic-policy=local, shoal.mesh.health-port=10256,
                 1 replica pinned to h2, published 8080 -> whoami :80
    h2: answers, whoami's `client:` line is the lab client's own address; health 200
    h1, h3: connection refused (kernel: TCP reset; userspace: accepted, then reset);
            health 503
    scaled to 3, one per node: every node answers from its own task, health 200
    `network inspect -v ingress` on a worker (h3) shows its own mesh: refused, then open
    towards its own task only

The kernel mesh keeps the client's address by not masquerading (every backend is local);
the userspace one cannot (it is a proxy), so there the service also asks for PROXY v2
(`shoal.mesh.proxy-protocol`, `whoami --proxy-protocol`), which also checks that a worker
(h2) gets that flag from the dispatcher.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.lab import Lab
from shoal.lab.ask import probe
from shoal.lab.layout import CLIENT_ADDRESS, LabLayout
from shoal.lab.procs import shoal_daemon_argv
from tests.integration.labtools import EXEC, host_of, nodes, running, shoal, until

pytestmark = pytest.mark.lab

HOSTS = ["h1", "h2", "h3"]
PORT, HEALTH = 8080, 10256
# how a refused connection looks to the client: a reset before (kernel) or after (proxy)
# the connection was accepted
REFUSED = ("ConnectionRefused", "ConnectionReset", "RemoteDisconnected")


def _userspace(layout: LabLayout, host: str) -> list[str]:
    return [*shoal_daemon_argv(layout, host), "--mesh", "userspace"]


def _one(lab: Lab, host: str, port: int) -> dict[str, object]:
    return probe(lab, "http", [f"{lab.address(host)}:{port}"], 1, timeout=2.0)[0]


def _health(lab: Lab, host: str) -> tuple[object, object]:
    result = _one(lab, host, HEALTH)
    body = result.get("body")
    return result.get("status"), json.loads(str(body)) if body else None


def _inspect(lab: Lab, host: str) -> dict[str, Any]:
    out = shoal(lab, "network", "inspect", "-v", "ingress", host=host).stdout
    network: dict[str, Any] = json.loads(out)[0]
    return network


def _mesh_port(lab: Lab, host: str) -> dict[str, Any]:
    """Port 8080 in `host`'s own mesh view, once its data plane is in step with its table."""

    def in_sync() -> dict[str, Any] | None:
        mesh = _inspect(lab, host)["ShoalMesh"]
        return mesh if mesh["InSync"] else None

    mesh = until(in_sync, what=f"{host}'s mesh in step with its endpoint table")
    port: dict[str, Any] = next(p for p in mesh["Ports"] if p["PublishedPort"] == PORT)
    return port


@pytest.fixture(scope="module", params=["kernel", "userspace"])
def lab3(request: pytest.FixtureRequest, lab_tag: str) -> Iterator[tuple[Lab, str]]:
    mode: str = request.param
    # this session's own labs (see conftest); "k"/"s": suffixes no other module uses
    lab = Lab(lab_tag + ("s" if mode == "userspace" else "k"),
              daemon_argv=_userspace if mode == "userspace" else shoal_daemon_argv)
    lab.down()
    try:
        lab.up(nodes=3)
        yield lab, mode
    finally:
        lab.down()


def test_local_policy_routes_to_local_tasks_only(lab3: tuple[Lab, str]) -> None:
    lab, mode = lab3
    began = time.monotonic()
    h2 = nodes(lab)["h2"]["ID"]
    proxied = mode == "userspace"
    shoal(lab, "service", "create", *EXEC, "--detach", "--name", "web", "--replicas", "1",
          "--constraint", f"node.id=={h2}",
          "--label", "shoal.mesh.traffic-policy=local",
          "--label", f"shoal.mesh.health-port={HEALTH}",
          *(["--label", f"shoal.mesh.proxy-protocol={PORT}"] if proxied else []),
          "--publish", f"published={PORT},target=80", "shoal", "whoami", "--port", "80",
          *(["--proxy-protocol"] if proxied else []))
    until(lambda: len(running(lab)) == 1, what="the web task running")

    # h2 has the task: it answers, and the task sees the client's own address
    until(lambda: _one(lab, "h2", PORT)["ok"], what="h2 answering on 8080")
    for result in probe(lab, "http", [f"{lab.address('h2')}:{PORT}"], 5):
        assert result["ok"], result
        assert f"client: {CLIENT_ADDRESS}:" in str(result["body"]), result["body"]
    until(lambda: _health(lab, "h2") == (200, {"service": "web", "localEndpoints": 1}),
          what="h2's health port saying 200")

    # h1 and h3 have none: refused at once (a reset, never a timeout), health 503
    for host in ("h1", "h3"):
        until(lambda h=host: _health(lab, h) == (503, {"service": "web", "localEndpoints": 0}),
              what=f"{host}'s health port saying 503")
        for result in probe(lab, "http", [f"{lab.address(host)}:{PORT}"], 3):
            assert not result["ok"] and any(r in str(result["error"]) for r in REFUSED), result
    refusing = _mesh_port(lab, "h3")  # a worker: its own view, from its endpoint table
    assert (refusing["TrafficPolicy"], refusing["State"], refusing["Backends"]) == (
        "local", "refused", [])

    # three replicas, one per node: every node answers for itself, every health port 200
    shoal(lab, "service", "update", "--detach", "--constraint-rm", f"node.id=={h2}",
          "--replicas-max-per-node", "1", "--replicas", "3", "web")
    until(lambda: {host_of(lab, t["NodeID"]) for t in running(lab)} == set(HOSTS),
          timeout=40, what="a web task on each of the 3 nodes")
    for host in HOSTS:
        until(lambda h=host: _health(lab, h) == (200, {"service": "web", "localEndpoints": 1}),
              what=f"{host}'s health port saying 200")
        until(lambda h=host: _one(lab, h, PORT)["ok"], what=f"{host} answering on 8080")
        own = {t["ID"][:12] for t in running(lab) if host_of(lab, t["NodeID"]) == host}
        for result in probe(lab, "http", [f"{lab.address(host)}:{PORT}"], 5):
            body = str(result["body"])
            assert result["ok"] and f"client: {CLIENT_ADDRESS}:" in body, result
            assert body.splitlines()[0].removeprefix("hostname: ") in own  # its own task
    inspected = _inspect(lab, "h3")
    assert len(inspected["Services"]["web"]["Tasks"]) == 3 and len(inspected["Peers"]) == 3
    # the docker CLI on a worker lists and inspects ingress the same way
    listed = lab.exec("h3", ["docker", "network", "ls", "--format", "{{.Name}} {{.Driver}}"],
                      capture=True, timeout=60)
    assert listed.returncode == 0 and listed.stdout == "ingress overlay\n", listed
    verbose = lab.exec("h3", ["docker", "network", "inspect", "--verbose", "--format",
                              "{{json .Services}}", "ingress"], capture=True, timeout=60)
    assert verbose.returncode == 0, verbose.stderr
    tasks = json.loads(verbose.stdout)["web"]["Tasks"]
    assert sorted(t["Info"]["Host IP"] for t in tasks) == sorted(lab.address(h) for h in HOSTS)
    serving = _mesh_port(lab, "h3")
    assert serving["State"] == "open" and [b["Local"] for b in serving["Backends"]] == [True]
    assert serving["ProxyProtocol"] is proxied
    print(f"\n{mode} mesh, local policy: refuse/answer/health checked on 3 nodes in "
          f"{time.monotonic() - began:.1f}s (after lab up)")
