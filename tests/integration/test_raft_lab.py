"""Raft in the lab: three (and five) managers, the leader's daemon killed (-9) again and
again while a client creates and updates services through the surviving managers;
afterwards every acknowledged write is on every manager (Jepsen-style, issue 3)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from shoal.lab import Lab
from tests import polling

pytestmark = pytest.mark.lab



def until(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """A peer may be restarting: its errors mean "not yet"."""
    return polling.until(check, timeout, what, retry_on=(Exception,))


@pytest.fixture(scope="module", params=[3, 5], ids=["3-managers", "5-managers"])
def managers_lab(lab_tag: str, request: pytest.FixtureRequest) -> Iterator[tuple[Lab, int]]:
    count: int = request.param
    lab = Lab(lab_tag + str(count))  # this session's own lab (see conftest)
    lab.down()
    try:
        lab.up(nodes=count, managers=count)
        until(lambda: _voters(lab, "h1") == count, what=f"{count} reachable managers")
        yield lab, count
    finally:
        lab.down()


def _voters(lab: Lab, host: str) -> int:
    with lab.client(host, timeout=5) as api:
        nodes = api.get("/nodes")
    return sum(1 for n in nodes if (n.get("ManagerStatus") or {}).get("Reachability")
               == "reachable")


def leader_host(lab: Lab, alive: list[str]) -> str | None:
    """The host whose manager leads, as the managers in `alive` see it."""
    for host in alive:
        try:
            with lab.client(host, timeout=5) as api:
                nodes = api.get("/nodes")
        except Exception:
            continue
        for n in nodes:
            status = n.get("ManagerStatus") or {}
            if status.get("Leader"):
                addr = status["Addr"].rsplit(":", 1)[0]
                return next(h for h in lab.hosts() if lab.address(h) == addr)
    return None


def docker(lab: Lab, host: str, *args: str) -> str:
    proc = lab.exec(host, ["docker", *args], capture=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} on {host}: {proc.stderr}")
    return proc.stdout


def test_the_docker_cli_sees_one_leader_from_every_manager(
    managers_lab: tuple[Lab, int],
) -> None:
    lab, count = managers_lab
    hosts = lab.hosts()
    for host in hosts:
        statuses = docker(lab, host, "node", "ls", "--format", "{{.ManagerStatus}}").split()
        assert sorted(statuses) == sorted(["Leader"] + ["Reachable"] * (count - 1)), statuses
        info = docker(lab, host, "info", "--format", "{{.Swarm.Managers}} {{.Swarm.Nodes}}")
        assert info.split() == [str(count), str(count)]
    # a write through one manager is read at once through another (forwarded, ReadIndex)
    docker(lab, hosts[-1], "service", "create", "--name", "cli", "--replicas", "0",
           "shoal", "sleep")
    assert docker(lab, hosts[1], "service", "inspect", "--format", "{{.Spec.Name}}",
                  "cli").strip() == "cli"
    docker(lab, hosts[1], "service", "rm", "cli")


@dataclass
class Writer:
    """Creates services and updates their label through whichever manager answers."""

    lab: Lab
    alive: Callable[[], list[str]]
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    acked: dict[str, int] = field(default_factory=dict)  # service -> last acknowledged value
    tried: dict[str, list[int]] = field(default_factory=dict)  # values sent after that ack
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            hosts = self.alive()
            if not hosts:
                time.sleep(0.05)
                continue
            host = self.rng.choice(hosts)
            if not self.acked or self.rng.random() < 0.4:
                n += 1
                self._create(host, f"s{n}")
            else:
                self._update(host, self.rng.choice(sorted(self.acked)))

    def _create(self, host: str, name: str) -> None:
        spec = {"Name": name, "Labels": {"v": "0"},
                "TaskTemplate": {"ContainerSpec": {
                    "Image": "shoal", "Labels": {"shoal.runtime": "exec"}, "Args": ["sleep"]}},
                "Mode": {"Replicated": {"Replicas": 0}}}
        self.tried.setdefault(name, []).append(0)
        try:
            with self.lab.client(host, timeout=10) as api:
                api.post("/services/create", spec)
        except Exception:
            self.failures += 1
            return
        self.acked[name] = 0
        self.tried[name] = []

    def _update(self, host: str, name: str) -> None:
        value = max([self.acked[name], *self.tried.get(name, [])]) + 1
        self.tried.setdefault(name, []).append(value)
        try:
            with self.lab.client(host, timeout=10) as api:
                svc = api.get(f"/services/{name}")
                spec = svc["Spec"]
                spec["Labels"] = {"v": str(value)}
                api.post(f"/services/{name}/update", spec,
                         params={"version": svc["Version"]["Index"]})
        except Exception:
            self.failures += 1
            return
        self.acked[name] = value
        self.tried[name] = []


def test_acknowledged_writes_survive_leader_kills(managers_lab: tuple[Lab, int]) -> None:
    lab, count = managers_lab
    managers = lab.hosts()
    down: set[str] = set()
    lock = threading.Lock()

    def alive() -> list[str]:
        with lock:
            return [h for h in managers if h not in down]

    writer = Writer(lab, alive)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    kills = 0
    try:
        # 4 kills, each once the cluster has recovered from the last: on a loaded machine a
        # round (new leader, restart) takes longer, so the count is fixed, not the time
        deadline = time.monotonic() + 120
        while kills < 4 and time.monotonic() < deadline:
            time.sleep(3)
            leader = until(lambda: leader_host(lab, alive()), timeout=15, what="a leader")
            with lock:
                down.add(leader)
            lab.kill_daemon(leader)  # SIGKILL, by PID
            kills += 1
            acked_before = len(writer.acked)
            until(lambda old=leader: leader_host(lab, alive()) not in (None, old), timeout=15,
                  what="a new leader")
            time.sleep(2)
            lab.start(leader)  # back on the same data root
            with lock:
                down.discard(leader)
            assert len(writer.acked) >= acked_before
    finally:
        writer.stop.set()
        thread.join(30)
    print(f"{count} managers: {kills} leader kills, {len(writer.acked)} services acknowledged,"
          f" {writer.failures} writes failed")
    assert kills == 4 and len(writer.acked) >= 20, (kills, len(writer.acked))
    # every acknowledged write is on every manager (a write that failed may have landed:
    # a later attempted value is accepted, an older one is not)
    for host in managers:
        def current(host: str = host) -> dict[str, int] | None:
            with lab.client(host, timeout=10) as api:
                services = api.get("/services")
            seen = {s["Spec"]["Name"]: int(s["Spec"]["Labels"]["v"]) for s in services}
            return seen if all(name in seen for name in writer.acked) else None

        seen = until(current, timeout=30, what=f"every acknowledged service on {host}")
        for name, value in writer.acked.items():
            assert seen[name] == value or seen[name] in writer.tried.get(name, []), (
                host, name, seen[name], value, writer.tried.get(name))
