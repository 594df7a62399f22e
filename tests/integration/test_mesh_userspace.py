"""The userspace mesh in a 1-node lab (`shoal daemon --mesh userspace`): real task processes,
requests from the lab's client namespace, through the shoal CLI.

What differs from the kernel mesh (tests/integration/test_foundation.py) is checked here:
no nftables table, tasks see the proxy unless the port asks for PROXY protocol v2 (service
label `shoal.mesh.proxy-protocol`), and a published port held by another program of the
node is reported by the daemon.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.lab import Lab
from shoal.lab.ask import probe
from shoal.lab.layout import LabLayout
from shoal.lab.procs import shoal_daemon_argv
from tests.integration.labtools import EXEC, shoal, until

pytestmark = pytest.mark.lab

H1 = "198.18.0.11"
CLIENT = "198.18.0.2"


def userspace_daemon(layout: LabLayout, host: str) -> list[str]:
    return [*shoal_daemon_argv(layout, host), "--mesh", "userspace"]


def running(lab: Lab, service: str) -> list[dict[str, Any]]:
    tasks = lab.client("h1").get("/tasks", params={"filters": {"service": {service: True}}})
    return [t for t in tasks
            if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]


def answers(lab: Lab, port: int, count: int, proto: str = "http") -> list[dict[str, Any]]:
    return probe(lab, proto, [f"{H1}:{port}"], count=count, timeout=2.0)


def field(body: str, key: str) -> str:
    return next(line.split(": ", 1)[1] for line in body.splitlines()
                if line.startswith(f"{key}:"))


@pytest.fixture(scope="module")
def lab(lab_tag: str) -> Iterator[Lab]:
    lab = Lab(lab_tag + "u", daemon_argv=userspace_daemon)  # this session's own (see conftest)
    lab.down()
    try:
        lab.up(nodes=1)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def web(lab: Lab) -> Iterator[Lab]:
    shoal(lab, "service", "create", *EXEC, "--name", "web", "--replicas", "3",
          "--publish", "published=8080,target=80",
          "--publish", "published=5353,target=53,protocol=udp",
          "shoal", "whoami", "--port", "80", "--udp-port", "53")
    until(lambda: len(running(lab, "web")) == 3, what="3 running web tasks")
    until(lambda: all(r["ok"] for r in answers(lab, 8080, 3)), timeout=10, what="8080 answers")
    yield lab
    shoal(lab, "service", "rm", "web", check=False)


def test_round_robin_through_the_proxy(web: Lab) -> None:
    results = answers(web, 8080, 30)
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    per_task = Counter(field(r["body"], "task") for r in results)
    assert set(per_task) == {"web.1", "web.2", "web.3"}
    assert all(n >= 8 for n in per_task.values()), per_task
    # the proxy connects from the node's side of the task network: tasks see the node
    assert field(results[0]["body"], "client").startswith("198.19.")
    # and no kernel rule is involved
    assert "inet shoal" not in nft_tables(web)


def test_udp_through_the_proxy(web: Lab) -> None:
    results = answers(web, 5353, 9, proto="udp")
    assert all(r["ok"] for r in results), results
    assert {field(r["body"], "task") for r in results} == {"web.1", "web.2", "web.3"}


def test_publish_add_and_rm(web: Lab) -> None:
    before = {t["ID"] for t in running(web, "web")}
    shoal(web, "service", "update", "-d", "--publish-add", "published=9090,target=80", "web")
    until(lambda: all(r["ok"] for r in answers(web, 9090, 3)), timeout=5, what="9090 answers")
    shoal(web, "service", "update", "-d", "--publish-rm", "9090", "web")
    until(lambda: not any(r["ok"] for r in answers(web, 9090, 2)), timeout=5,
          what="9090 stops answering")
    assert all(r["ok"] for r in answers(web, 8080, 3))
    assert {t["ID"] for t in running(web, "web")} == before


def test_scale_down_keeps_answering_from_the_rest(web: Lab) -> None:
    shoal(web, "service", "scale", "-d", "web=1")
    until(lambda: len(running(web, "web")) == 1, what="1 running task")
    results = answers(web, 8080, 6)
    assert all(r["ok"] for r in results)
    assert {field(r["body"], "task") for r in results} == {"web.1"}
    shoal(web, "service", "scale", "-d", "web=3")
    until(lambda: len(running(web, "web")) == 3, what="3 running again")


def nft_tables(lab: Lab) -> str:
    return subprocess.run(["ip", "netns", "exec", lab.layout.netns("h1"), "nft", "list",
                           "tables"], capture_output=True, text=True, check=True).stdout


def test_restart_removes_a_stale_kernel_mesh_and_serves_again(web: Lab) -> None:
    web.kill_daemon("h1", signal.SIGTERM)
    # what a daemon in kernel mode would have left: a table that takes port 8080 first
    script = ("add table inet shoal\n"
              "add chain inet shoal input { type filter hook input priority -10; }\n"
              "add rule inet shoal input tcp dport 8080 drop\n")
    subprocess.run(["ip", "netns", "exec", web.layout.netns("h1"), "nft", "-f", "-"],
                   input=script, text=True, check=True)
    web.start("h1")
    until(lambda: "inet shoal" not in nft_tables(web), what="the stale table removed")
    until(lambda: all(r["ok"] for r in answers(web, 8080, 3)), timeout=20,
          what="8080 answers after the restart")
    results = answers(web, 8080, 9)
    assert {field(r["body"], "task") for r in results} == {"web.1", "web.2", "web.3"}


def test_proxy_protocol_v2_tells_tasks_the_client(lab: Lab) -> None:
    shoal(lab, "service", "create", *EXEC, "--name", "pp", "--replicas", "2",
          "--label", "shoal.mesh.proxy-protocol=8081/tcp,5354/udp",
          "--publish", "published=8081,target=80",
          "--publish", "published=5354,target=53,protocol=udp",
          "shoal", "whoami", "--port", "80", "--udp-port", "53", "--proxy-protocol")
    try:
        until(lambda: len(running(lab, "pp")) == 2, what="2 running pp tasks")
        until(lambda: all(r["ok"] for r in answers(lab, 8081, 2)), timeout=10,
              what="8081 answers")
        for proto, published in (("http", 8081), ("udp", 5354)):
            results = answers(lab, published, 4, proto=proto)
            assert all(r["ok"] for r in results), results
            for r in results:
                assert field(r["body"], "client").startswith(f"{CLIENT}:")
                assert field(r["body"], "proxy").startswith("198.19.")
            assert len({field(r["body"], "task") for r in results}) == 2
    finally:
        shoal(lab, "service", "rm", "pp", check=False)


def test_a_port_held_by_a_node_program_is_reported(lab: Lab) -> None:
    holder = lab.popen("h1", [sys.executable, "-c",
                              "import socket, time; s = socket.socket(); "
                              "s.bind(('0.0.0.0', 7070)); s.listen(); print('bound', flush=True);"
                              " time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "bound"
        shoal(lab, "service", "create", *EXEC, "--name", "busy", "-d", "--publish",
              "published=7070,target=80", "shoal", "whoami", "--port", "80")
        log = lab.layout.daemon_log("h1")
        until(lambda: "cannot listen on tcp/7070" in log.read_text(errors="replace"),
              timeout=20, what="the daemon reports tcp/7070")
    finally:
        holder.kill()
        holder.wait()
    # once the program is gone, the mesh takes the port on its next attempt
    try:
        until(lambda: all(r["ok"] for r in answers(lab, 7070, 2)), timeout=20,
              what="7070 answers")
    except AssertionError as exc:
        ps = shoal(lab, "service", "ps", "busy", check=False).stdout
        raise AssertionError(f"{exc}\n{ps}\n{answers(lab, 7070, 1)}") from None
    shoal(lab, "service", "rm", "busy")
