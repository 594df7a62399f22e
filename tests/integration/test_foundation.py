"""Issue 2's acceptance, run as a user would: the `shoal` CLI inside a 1-node lab, requests
from the lab's client namespace, the kernel mesh, real task processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.lab import Lab
from shoal.lab.ask import probe
from tests.integration.labtools import EXEC, shoal, until

pytestmark = pytest.mark.lab

H1 = "198.18.0.11"


def tasks(lab: Lab, service: str) -> list[dict[str, Any]]:
    return lab.client("h1").get(  # type: ignore[no-any-return]
        "/tasks", params={"filters": {"service": {service: True}}}
    )


def running(lab: Lab, service: str) -> list[dict[str, Any]]:
    return [t for t in tasks(lab, service)
            if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]


def answers(lab: Lab, port: int, count: int, proto: str = "http") -> list[dict[str, Any]]:
    return probe(lab, proto, [f"{H1}:{port}"], count=count, timeout=2.0)


def task_of(body: str) -> str:
    return next(line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("task:"))


def node_netns(lab: Lab) -> str:
    return lab.layout.netns("h1")


def ruleset(lab: Lab) -> str:
    return subprocess.run(["ip", "netns", "exec", node_netns(lab), "nft", "list", "ruleset"],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def web(lab1: Lab) -> Iterator[Lab]:
    shoal(lab1, "service", "create", *EXEC, "--name", "web", "--replicas", "3",
          "--publish", "published=8080,target=80", "--publish", "published=5353,target=53,"
          "protocol=udp", "--restart-delay", "1s",
          "shoal", "whoami", "--port", "80", "--udp-port", "53")
    until(lambda: len(running(lab1, "web")) == 3, what="3 running web tasks")
    yield lab1
    shoal(lab1, "service", "rm", "web", check=False)


def test_requests_to_the_node_are_answered_by_every_task_in_turn(web: Lab) -> None:
    results = answers(web, 8080, 30)
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    per_task = Counter(task_of(r["body"]) for r in results)
    assert set(per_task) == {"web.1", "web.2", "web.3"}
    assert all(n >= 8 for n in per_task.values()), per_task  # round robin: about 10 each
    # the client's own address reaches the task (no SNAT for a local task)
    assert "client: 198.18.0.2:" in results[0]["body"]


def test_udp_through_the_mesh(web: Lab) -> None:
    results = answers(web, 5353, 9, proto="udp")
    assert all(r["ok"] for r in results)
    assert {task_of(r["body"]) for r in results} == {"web.1", "web.2", "web.3"}


def test_a_task_reaches_the_published_port_itself(web: Lab) -> None:
    # hairpin: a task's request may be DNAT'd back to the same bridge, even to itself
    task = running(web, "web")[0]
    seen: Counter[str] = Counter()
    for _ in range(9):
        proc = subprocess.run(
            ["ip", "netns", "exec", f"shoal-t-{task['ID'][:12]}", "curl", "-sf", "-m", "2",
             f"http://{H1}:8080/"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        seen[task_of(proc.stdout)] += 1
    assert set(seen) == {"web.1", "web.2", "web.3"}


def test_publish_add_and_rm_on_the_live_service(web: Lab) -> None:
    before = {t["ID"] for t in running(web, "web")}
    shoal(web, "service", "update", "--publish-add", "published=9090,target=80", "web")
    until(lambda: all(r["ok"] for r in answers(web, 9090, 3)), timeout=5, what="9090 answers")
    assert {t["ID"] for t in running(web, "web")} == before
    ls = shoal(web, "service", "ls").stdout
    assert "*:9090->80/tcp" in ls and "*:8080->80/tcp" in ls
    shoal(web, "service", "update", "--publish-rm", "9090", "web")
    until(lambda: not any(r["ok"] for r in answers(web, 9090, 2)), timeout=5,
          what="9090 stops answering")
    assert all(r["ok"] for r in answers(web, 8080, 3))
    assert {t["ID"] for t in running(web, "web")} == before


def test_a_killed_task_is_replaced_and_no_longer_gets_traffic(web: Lab) -> None:
    victim = running(web, "web")[0]
    pid = victim["Status"]["ContainerStatus"]["PID"]
    os.kill(pid, signal.SIGKILL)

    def replaced() -> bool:
        now = running(web, "web")
        return len(now) == 3 and victim["ID"] not in {t["ID"] for t in now}

    until(replaced, what="a replacement task running")
    dead = next(t for t in tasks(web, "web") if t["ID"] == victim["ID"])
    assert dead["Status"]["State"] == "failed"
    assert "non-zero exit (137)" in dead["Status"]["Err"]
    results = answers(web, 8080, 30)
    assert all(r["ok"] for r in results)
    assert victim["ID"][:12] not in {r["body"].split("hostname: ")[1][:12] for r in results}
    ps = shoal(web, "service", "ps", "web").stdout
    assert "non-zero exit (137)" in ps


def test_scale_up_and_down_converge(web: Lab) -> None:
    shoal(web, "service", "scale", "web=10")
    assert len(running(web, "web")) == 10
    results = answers(web, 8080, 40)
    assert all(r["ok"] for r in results)
    assert len({task_of(r["body"]) for r in results}) == 10
    shoal(web, "service", "scale", "web=1")
    until(lambda: len(running(web, "web")) == 1, what="1 running task")
    fmt = shoal(web, "service", "ps", "--filter", "desired-state=running", "--format",
                "{{.Name}} {{.CurrentState}}", "web").stdout.split("\n")
    assert [line.split()[0] for line in fmt if line] == ["web.1"]
    shoal(web, "service", "scale", "web=3")


def test_daemon_restart_keeps_serving_and_comes_back(web: Lab) -> None:
    until(lambda: len(running(web, "web")) == 3, what="3 running")
    ids = {t["ID"] for t in running(web, "web")}
    web.kill_daemon("h1", signal.SIGTERM)
    # the kernel mesh and the tasks outlive the daemon
    assert all(r["ok"] for r in answers(web, 8080, 6))
    web.start("h1")
    until(lambda: {t["ID"] for t in running(web, "web")} == ids, what="tasks adopted")
    results = answers(web, 8080, 30)
    assert all(r["ok"] for r in results)
    assert {task_of(r["body"]) for r in results} == {"web.1", "web.2", "web.3"}


def test_bad_input_is_refused_and_changes_nothing(web: Lab) -> None:
    before = web.client("h1").get("/services")
    for flags, message in [
        (["--publish", "published=8081"], "target"),
        (["--publish", "published=70000,target=80"], "70000"),
        (["--publish", "published=8081,target=80,protocol=sctpx"], "protocol"),
        (["--publish", "published=8081,target=80,mode=bogus"], "mode"),
        (["--publish", "published=8080,target=80"], "already in use by service 'web'"),
    ]:
        proc = shoal(web, "service", "create", *EXEC, "--name", "bad", *flags, "-d", "busybox",
                     check=False)
        assert proc.returncode != 0 and message in proc.stderr, (flags, proc.stderr)
    proc = shoal(web, "service", "inspect", "nosuch", check=False)
    assert proc.returncode != 0 and "nosuch" in proc.stderr
    assert web.client("h1").get("/services") == before


def test_a_missing_program_fails_the_task_with_the_reason(web: Lab) -> None:
    shoal(web, "service", "create", *EXEC, "--name", "broken", "-d", "--restart-condition", "none",
          "nosuchprogram-shoal")
    until(lambda: any(t["Status"]["State"] == "rejected" for t in tasks(web, "broken")),
          what="broken task rejected")
    ps = shoal(web, "service", "ps", "--no-trunc", "broken").stdout
    assert "executable file not found" in ps
    shoal(web, "service", "rm", "broken")
    assert json.loads(shoal(web, "info", "--format", "{{json .Swarm.LocalNodeState}}").stdout) \
        == "active"


def _task_process_alive(pid: int, task_id: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return f"SHOAL_TASK_ID={task_id}".encode() in fh.read()
    except OSError:
        return False


def test_health_checks_run_in_the_task_and_gate_traffic(web: Lab) -> None:
    # a start period covers whoami's start-up on a loaded machine (failures in it don't count)
    shoal(web, "service", "create", *EXEC, "-d", "--name", "checked", "-p", "8082:80",
          "--health-cmd", "curl -sf http://127.0.0.1:80/health", "--health-interval", "300ms",
          "--health-start-period", "20s", "shoal", "whoami", "--port", "80")
    shoal(web, "service", "create", *EXEC, "-d", "--name", "sick", "-p", "8083:80",
          "--restart-condition", "none", "--health-cmd", "false", "--health-interval", "200ms",
          "--health-retries", "2", "shoal", "whoami", "--port", "80")
    try:
        until(lambda: len(running(web, "checked")) == 1, what="checked task healthy")
        assert all(r["ok"] for r in answers(web, 8082, 3))
        until(lambda: any(t["Status"].get("Err") == "task: unhealthy container"
                          for t in tasks(web, "sick")), what="sick task failed unhealthy")
        assert not any(r["ok"] for r in answers(web, 8083, 2))
    finally:
        shoal(web, "service", "rm", "checked", "sick", check=False)


def test_service_rm_leaves_nothing_behind(web: Lab) -> None:
    service_id = web.client("h1").get("/services/web")["ID"]
    ids = [t["ID"] for t in tasks(web, service_id)]
    pids = {t["ID"]: t["Status"]["ContainerStatus"]["PID"] for t in running(web, "web")}
    assert pids and all(_task_process_alive(pid, tid) for tid, pid in pids.items())
    shoal(web, "service", "rm", "web")

    def clean() -> bool:
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        links = subprocess.run(["ip", "-n", node_netns(web), "-o", "link"], capture_output=True,
                               text=True).stdout
        return (
            not any(f"shoal-t-{i[:12]}" in netns for i in ids)
            and " vt" not in links
            and "8080" not in ruleset(web)
            and not tasks(web, service_id)
        )

    until(clean, what="no netns, veth, rule or task of web")
    assert not any(_task_process_alive(pid, tid) for tid, pid in pids.items())
    assert not any(r["ok"] for r in answers(web, 8080, 2))
