"""`service ls|ps|inspect` and `node ls|inspect|ps|update|promote|rm` output and calls."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .fakes import FakeDaemon, Shoal

WEB_ID = "x5oi3qkhyj8gq2wz9mbt0vd4e"


@pytest.fixture
def web(daemon: FakeDaemon) -> dict[str, Any]:
    return daemon.add_service(
        "web",
        {"TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest@sha256:" + "a" * 64}}},
        ID=WEB_ID,
        ServiceStatus={"RunningTasks": 2, "DesiredTasks": 3},
        Endpoint={"Ports": [
            {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
            {"Protocol": "tcp", "TargetPort": 81, "PublishedPort": 8081, "PublishMode": "ingress"},
            {"Protocol": "tcp", "TargetPort": 22, "PublishedPort": 2222, "PublishMode": "host"},
        ]},
    )  # fmt: skip


def test_service_ls_table(shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]) -> None:
    daemon.add_service(
        "agent",
        {"Mode": {"Global": {}}},
        ID="agentid",
        ServiceStatus={"RunningTasks": 1, "DesiredTasks": 1},
    )
    result = shoal("service", "ls")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "ID             NAME      MODE         REPLICAS   IMAGE            PORTS\n"
        "agentid        agent     global       1/1        busybox:latest   \n"
        "x5oi3qkhyj8g   web       replicated   2/3        busybox:latest   *:8080-8081->80-81/tcp\n"
    )
    assert daemon.requests[0].params == {"status": "true"}


def test_service_ls_quiet_filter_and_formats(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    result = shoal("service", "ls", "-q", "-f", "name=web")
    assert result.stdout == "x5oi3qkhyj8g\n"
    assert daemon.requests[-1].params == {"filters": '{"name":{"web":true}}'}
    assert shoal("service", "ls", "--format", "{{.Name}}:{{.Replicas}}").stdout == "web:2/3\n"
    assert shoal("service", "ls", "--format", "table {{.Name}}\\t{{.Mode}}").stdout == (
        "NAME      MODE\nweb       replicated\n"
    )
    line = json.loads(shoal("service", "ls", "--format", "json").stdout)
    assert line == {
        "ID": "x5oi3qkhyj8g", "Image": "busybox:latest", "Mode": "replicated", "Name": "web",
        "Ports": "*:8080-8081->80-81/tcp", "Replicas": "2/3",
    }  # fmt: skip


def test_service_ls_counts_tasks_when_the_daemon_gives_no_status(
    shoal: Shoal, daemon: FakeDaemon
) -> None:
    service = daemon.add_service("web", {"Mode": {"Replicated": {"Replicas": 2}}})
    daemon.add_node("n1", "h1")
    daemon.tasks = [
        {"ID": "t1", "ServiceID": service["ID"], "NodeID": "n1", "DesiredState": "running",
         "Status": {"State": "running"}},
        {"ID": "t2", "ServiceID": service["ID"], "NodeID": "n1", "DesiredState": "running",
         "Status": {"State": "starting"}},
    ]  # fmt: skip
    assert shoal("service", "ls", "--format", "{{.Replicas}}").stdout == "1/2\n"


def test_bad_template_is_an_error(shoal: Shoal, web: dict[str, Any]) -> None:
    result = shoal("service", "ls", "--format", "{{.Nope}}")
    assert result.exit_code == 1
    assert "can't evaluate field Nope" in result.stderr


def _task(
    ident: str, slot: int, state: str, desired: str, created: str, **extra: Any
) -> dict[str, Any]:
    return {
        "ID": ident, "ServiceID": WEB_ID, "Slot": slot, "NodeID": "node1id",
        "DesiredState": desired, "CreatedAt": created,
        "Spec": {"ContainerSpec": {"Image": "busybox:latest@sha256:" + "b" * 64}},
        "Status": {"State": state, "Timestamp": "2025-01-01T11:59:55.123456789Z", **extra},
    }  # fmt: skip


def test_service_ps(shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]) -> None:
    daemon.add_node("node1id", "shoal-h1")
    daemon.tasks = [
        _task("task2aaaaaaaaaaaaaaaaaaaa", 2, "running", "running", "2025-01-01T11:00:00Z"),
        _task("task1newaaaaaaaaaaaaaaaaa", 1, "running", "running", "2025-01-01T11:30:00Z",
              PortStatus={"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 7000}]}),
        _task("task1oldaaaaaaaaaaaaaaaaa", 1, "failed", "shutdown", "2025-01-01T11:00:00Z",
              Err="task: non-zero exit (1): the quick brown fox jumps over the lazy dog"),
        _task("task10aaaaaaaaaaaaaaaaaaa", 10, "running", "running", "2025-01-01T11:00:00Z"),
    ]  # fmt: skip
    result = shoal("service", "ps", "web")
    assert result.exit_code == 0, result.output
    widths = (15, 12, 17, 11, 16, 24, 35)  # each column's longest cell plus 3, like docker
    expected = [
        ("ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR", "PORTS"),
        ("task1newaaaa", "web.1", "busybox:latest", "shoal-h1", "Running",
         "Running 4 seconds ago", "", "*:7000->80/tcp"),
        ("task1oldaaaa", " \\_ web.1", "busybox:latest", "shoal-h1", "Shutdown",
         "Failed 4 seconds ago", '"task: non-zero exit (1): the …"', ""),
        ("task2aaaaaaa", "web.2", "busybox:latest", "shoal-h1", "Running",
         "Running 4 seconds ago", "", ""),
        ("task10aaaaaa", "web.10", "busybox:latest", "shoal-h1", "Running",
         "Running 4 seconds ago", "", ""),
    ]  # fmt: skip
    assert result.stdout.splitlines() == [
        "".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[-1]
        for row in expected
    ]
    calls = [(r.path, r.params.get("filters")) for r in daemon.requests[:3]]
    assert calls == [
        ("/services", '{"id":{"web":true}}'),
        ("/services", '{"name":{"web":true}}'),
        ("/tasks", '{"service":{"' + WEB_ID + '":true}}'),
    ]


def test_service_ps_quiet_filters_and_missing(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    daemon.tasks = [
        _task("task1aaaaaaaaaaaaaaaaaaaa", 1, "running", "running", "2025-01-01T11:00:00Z")
    ]
    result = shoal(
        "service", "ps", "-q", "-f", "desired-state=running", "-f", "node=self", "web", "nosuch"
    )
    assert result.exit_code == 1
    assert result.stdout == "task1aaaaaaaaaaaaaaaaaaaa\n"
    assert result.stderr == "Error: no such service: nosuch\n"
    tasks_call = daemon.requests_to("GET", "/tasks")[0]
    assert json.loads(tasks_call.params["filters"]) == {
        "desired-state": {"running": True}, "node": {"node1id": True}, "service": {WEB_ID: True},
    }  # fmt: skip


def test_service_inspect(shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]) -> None:
    result = shoal("service", "inspect", "web")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [web]
    assert result.stdout.startswith('[\n    {\n        "ID": "x5oi3qkhyj8gq2wz9mbt0vd4e",\n')
    assert daemon.requests[0].params == {"insertDefaults": "true"}
    fmt = shoal("service", "inspect", "--format", "{{.Spec.Name}} {{json .Spec.Mode}}", "web")
    assert fmt.stdout == 'web {"Replicated":{"Replicas":1}}\n'
    assert json.loads(shoal("service", "inspect", "--format", "json", "web").stdout) == [web]


def test_service_inspect_missing(shoal: Shoal, web: dict[str, Any]) -> None:
    result = shoal("service", "inspect", "nosuch")
    assert result.exit_code == 1
    assert result.stdout == "[]\n"
    assert result.stderr == "Error: no such service: nosuch\n"


def test_service_inspect_pretty(shoal: Shoal, web: dict[str, Any]) -> None:
    web["Spec"]["UpdateConfig"] = {
        "Parallelism": 1,
        "Delay": 10_000_000_000,
        "FailureAction": "pause",
        "Monitor": 5_000_000_000,
        "MaxFailureRatio": 0,
        "Order": "stop-first",
    }
    text = shoal("service", "inspect", "--pretty", "web").stdout
    assert (
        "ID:\t\tx5oi3qkhyj8gq2wz9mbt0vd4e\nName:\t\tweb\nService Mode:\tReplicated\n Replicas:\t1\n"
        in text
    )
    assert " Delay:\t\t10s\n" in text
    assert " PublishedPort = 8080\n  Protocol = tcp\n  TargetPort = 80\n" in text


def test_node_ls(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.add_node("node2id", "shoal-h2", ManagerStatus={"Reachability": "reachable"})
    daemon.add_node(
        "node1id", "shoal-h1", ManagerStatus={"Leader": True, "Reachability": "reachable"}
    )
    daemon.add_node("node10id", "shoal-h10")
    result = shoal("node", "ls")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "ID           HOSTNAME    STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION\n"
        "node1id *    shoal-h1    Ready     Active         Leader           0.1.0\n"
        "node2id      shoal-h2    Ready     Active         Reachable        0.1.0\n"
        "node10id     shoal-h10   Ready     Active                          0.1.0\n"
    )
    assert [r.path for r in daemon.requests] == ["/nodes", "/info"]
    assert (
        shoal("node", "ls", "-q").stdout
        == "node2id\nnode1id\nnode10id\n"[:0] + "node1id\nnode2id\nnode10id\n"
    )
    assert (
        shoal("node", "ls", "--format", "{{.Hostname}} {{.Self}}").stdout.splitlines()[0]
        == "shoal-h1 true"
    )


def test_node_inspect_self_and_update(shoal: Shoal, daemon: FakeDaemon) -> None:
    node = daemon.add_node("node1id", "shoal-h1")
    result = shoal("node", "inspect", "--format", "{{.Description.Hostname}}", "self")
    assert result.stdout == "shoal-h1\n"
    result = shoal("node", "update", "--availability", "drain", "--label-add", "rack=r1", "self")
    assert result.exit_code == 0, result.output
    assert result.stdout == "self\n"
    post = daemon.requests_to("POST", "/nodes/node1id/update")[0]
    assert post.params == {"version": "5"}
    assert post.body == {"Role": "worker", "Availability": "drain", "Labels": {"rack": "r1"}}
    assert node["Spec"]["Availability"] == "drain"


def test_node_update_refuses_bad_values(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.add_node("node1id", "shoal-h1")
    # sent as given, as docker does; dockerd (and shoal) answer `invalid Availability`
    shoal("node", "update", "--availability", "sleep", "shoal-h1")
    assert daemon.writes()[-1].body["Availability"] == "sleep"
    daemon.requests.clear()
    result = shoal("node", "update", "--label-rm", "nope", "shoal-h1")
    assert result.stderr == "key nope doesn't exist in node's labels\n"
    assert daemon.writes() == []


def test_promote_demote_rm(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.add_node("node2id", "shoal-h2")
    assert (
        shoal("node", "promote", "shoal-h2").stdout
        == "Node shoal-h2 promoted to a manager in the swarm.\n"
    )
    assert shoal("node", "promote", "shoal-h2").stdout == "Node node2id is already a manager.\n"
    assert len(daemon.requests_to("POST", "/nodes/node2id/update")) == 1
    assert shoal("node", "demote", "shoal-h2").stdout == "Manager shoal-h2 demoted in the swarm.\n"
    result = shoal("node", "rm", "-f", "shoal-h2")
    assert result.stdout == "shoal-h2\n"
    assert daemon.requests[-1].params == {"force": "1"}
    assert daemon.nodes == []


def test_node_ps_defaults_to_self(shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]) -> None:
    daemon.add_node("node1id", "shoal-h1")
    daemon.tasks = [
        _task("task1aaaaaaaaaaaaaaaaaaaa", 1, "running", "running", "2025-01-01T11:00:00Z")
    ]
    result = shoal("node", "ps", "--format", "{{.Name}} {{.Node}} {{.CurrentState}}")
    assert result.stdout == "web.1 shoal-h1 Running 4 seconds ago\n"
    tasks_call = daemon.requests_to("GET", "/tasks")[0]
    assert json.loads(tasks_call.params["filters"]) == {"node": {"node1id": True}}


def test_inspect_pretty_is_framed_and_worded_as_dockers(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    # compared with docker 28.2's output against a lab (docs/design/user-walkthrough.md)
    web["Spec"]["TaskTemplate"]["Resources"] = {"Limits": {}, "Reservations": {}}
    one = shoal("service", "inspect", "--pretty", "web").stdout
    assert one.startswith("\nID:\t\t") and one.endswith("PublishMode = host \n\n")
    assert "\nResources:\n" in one  # an empty Resources object still prints the line
    two = shoal("service", "inspect", "--pretty", "web", "web").stdout
    assert two == one + one
    daemon.add_node(
        "node2id", "shoal-h2", CreatedAt="2026-12-04T21:15:51.028240Z",
        ManagerStatus={"Reachability": "reachable", "Addr": "198.18.0.12:2377"},
    )  # fmt: skip
    daemon.add_node("node3id", "shoal-h3", CreatedAt="2026-12-04T21:15:51Z")
    text = shoal("node", "inspect", "--pretty", "shoal-h2", "shoal-h3").stdout
    assert "Joined at:             \t2026-12-04 21:15:51.02824 +0000 utc\n" in text
    assert "Joined at:             \t2026-12-04 21:15:51 +0000 utc\n" in text
    assert " Raft Status:\t\tReachable\n" in text
    assert "\n\n" not in text and text.count("ID:\t\t\t") == 2 and text.endswith("\n")
