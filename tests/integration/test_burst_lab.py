"""A burst of container tasks with the leader's daemon killed -9 mid-way (issue 13).

4 hosts (3 managers, 1 worker); a service of busybox httpd containers from the lab registry. Once
a third of the replicas run, the daemon of the leading manager is killed -9 and started
again (its containers keep running: adopted). Afterwards every slot has exactly one running
task, no task is left non-terminal with desired state shutdown, no node is down, and the
nodes run exactly as many containers of the service as the store says (none duplicated,
none lost).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shoal.lab import Lab
from shoal.lab import images as test_images
from tests import polling
from tests.integration.conftest import session_lab_tag

pytestmark = pytest.mark.lab

REPLICAS = 40
IMAGE = "198.18.0.3:5000/busybox:burst"
TERMINAL = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """A manager may be restarting or busy: its errors mean "not yet"."""
    return polling.until(check, timeout, what, retry_on=(Exception,))


@pytest.fixture(scope="module")
def lab3() -> Iterator[Lab]:
    lab = Lab(session_lab_tag("b"))
    lab.down()
    try:
        lab.up(nodes=4, managers=3)
        test_images.push("busybox", IMAGE, netns=lab.layout.netns("client"))
        yield lab
    finally:
        lab.down()


def leader_host(lab: Lab) -> str:
    for host in lab.hosts():
        try:
            with lab.client(host, timeout=10) as api:
                for node in api.get("/nodes"):
                    if (node.get("ManagerStatus") or {}).get("Leader"):
                        return str(node["Description"]["Hostname"]).removeprefix("shoal-")
        except Exception:
            continue
    raise AssertionError("no manager names a leader")


def tasks_of(lab: Lab, host: str) -> list[dict[str, Any]]:
    with lab.client(host, timeout=20) as api:
        tasks: list[dict[str, Any]] = api.get("/tasks", {"filters": {"service": ["burst"]}})
    return tasks


def running_per_slot(tasks: list[dict[str, Any]]) -> Counter[int]:
    return Counter(t["Slot"] for t in tasks
                   if t["DesiredState"] == "running" and t["Status"]["State"] == "running")


def settled(lab: Lab, host: str) -> list[dict[str, Any]] | None:
    tasks = tasks_of(lab, host)
    per_slot = running_per_slot(tasks)
    limbo = [t for t in tasks if t["DesiredState"] != "running"
             and t["Status"]["State"] not in TERMINAL]
    if sorted(per_slot) == list(range(1, REPLICAS + 1)) and set(per_slot.values()) == {1} \
            and not limbo:
        return tasks
    return None


def containers(lab: Lab) -> Counter[str]:
    """Running containers of the service per host (the nodes' own view: `docker ps`)."""
    seen: Counter[str] = Counter()
    for host in lab.hosts():
        out = lab.exec(host, ["docker", "ps", "--format", "{{.Names}}"], capture=True,
                       timeout=60).stdout
        seen[host] = sum(name.startswith("burst.") for name in out.split())
    return seen


def test_a_burst_with_the_leader_killed_ends_with_one_running_task_per_slot(lab3: Lab) -> None:
    victim = leader_host(lab3)
    with lab3.client(victim, timeout=60) as api:
        api.post("/services/create", {
            "Name": "burst",
            "TaskTemplate": {"ContainerSpec": {"Image": IMAGE,
                                               "Args": ["httpd", "-f", "-p", "80"]}},
            "Mode": {"Replicated": {"Replicas": REPLICAS}},
        })  # fmt: skip
    poll = next(h for h in lab3.hosts() if h != victim)
    until(lambda: sum(running_per_slot(tasks_of(lab3, poll)).values()) >= REPLICAS // 3,
          90, "a third of the replicas running")
    lab3.kill_daemon(victim)
    lab3.start(victim, wait=False)
    tasks = until(lambda: settled(lab3, poll), 120,
                  "one running task per slot and none in limbo after the kill")
    with lab3.client(poll, timeout=20) as api:
        down = [n["Description"]["Hostname"] for n in api.get("/nodes")
                if n["Status"]["State"] != "ready"]
    assert not down, down
    # what runs on the nodes is what the store says: no container of a replaced or lost
    # task still running beside its slot's task
    by_node = Counter(t["NodeID"] for t in tasks if t["DesiredState"] == "running")
    hosts = {}
    with lab3.client(poll, timeout=20) as api:
        for node in api.get("/nodes"):
            hosts[node["ID"]] = str(node["Description"]["Hostname"]).removeprefix("shoal-")
    expected = Counter({hosts[n]: c for n, c in by_node.items()})
    until(lambda: containers(lab3) == expected or None, 60,
          f"running containers per host = the store's running tasks per node {expected}")
