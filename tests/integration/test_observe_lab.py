"""Operating a 5-node lab (3 managers, 2 workers): `docker events` on one manager while
another makes the changes, `--since` replay on a third; every host's /metrics (on its own
127.0.0.1:9323) parsed with prometheus-client: tasks after a scale, the mesh's connections
and bytes after requests, dispatcher sessions and heartbeats, the Raft leader after a
failover (last: it kills the leader); the dashboard in headless Chromium on h1."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.lab import Lab
from shoal.lab.ask import probe
from tests.integration.labtools import EXEC, running, shoal, until

pytestmark = pytest.mark.lab

HOSTS = ("h1", "h2", "h3", "h4", "h5")
MANAGERS = ("h1", "h2", "h3")
SCRAPE = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
          "'http://127.0.0.1:9323/metrics', timeout=10).read().decode())")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
PORT_8080 = (("protocol", "tcp"), ("published_port", "8080"))
NOT_YET = (AssertionError, KeyError)  # a daemon (re)starting; a metric not there yet


@pytest.fixture(scope="module")
def lab5(lab_tag: str) -> Iterator[Lab]:
    lab = Lab(lab_tag + "o")
    lab.down()
    try:
        lab.up(nodes=len(HOSTS), managers=len(MANAGERS))
        yield lab
    finally:
        lab.down()


def scrape(lab: Lab, host: str) -> Samples:
    proc = lab.exec(host, [sys.executable, "-c", SCRAPE], capture=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(proc.stdout) for s in family.samples}


class EventStream:
    """`docker events` on a lab host, its lines read by a thread (so no line waits in a
    buffer that select() cannot see)."""

    def __init__(self, lab: Lab, host: str, argv: list[str]) -> None:
        self.proc = lab.popen(host, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def until(self, name: str, action: str, timeout: float = 30) -> list[dict[str, Any]]:
        """The events read up to `name`'s `action`."""
        deadline, seen = time.monotonic() + timeout, []
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {action} of {name} within {timeout}s: {seen}") from None
            event: dict[str, Any] = json.loads(line)
            seen.append(event)
            if event["Actor"]["Attributes"].get("name") == name and event["Action"] == action:
                return seen

    def close(self) -> None:
        self.proc.kill()  # our own child, by its PID
        self.proc.wait()
        self._reader.join(timeout=10)


def actions(events: list[dict[str, Any]], name: str) -> list[str]:
    return [e["Action"] for e in events
            if e["Type"] == "service" and e["Actor"]["Attributes"].get("name") == name]


def test_docker_events_on_one_manager_show_changes_made_through_another(lab5: Lab) -> None:
    t0 = time.time()
    argv = ["docker", "events", "--since", f"{t0 - 1:.3f}", "--filter", "type=service",
            "--format", "{{json .}}"]
    stream = EventStream(lab5, "h2", argv)
    try:
        # a marker first: replayed if the stream attached late, live otherwise; once it is
        # printed, the stream is past its replay and what follows is live
        shoal(lab5, "service", "create", *EXEC, "--detach", "--name", "marker", "sleep", "600")
        stream.until("marker", "create")
        shoal(lab5, "service", "create", *EXEC, "--detach", "--name", "evt", "sleep", "600")
        shoal(lab5, "service", "update", "--detach", "--replicas", "2", "evt", host="h3")
        shoal(lab5, "service", "rm", "evt")
        live = stream.until("evt", "remove")
    finally:
        stream.close()
    assert actions(live, "evt")[0] == "create" and actions(live, "evt")[-1] == "remove"
    assert "update" in actions(live, "evt")
    assert all(e["scope"] == "swarm" and e["Type"] == "service" for e in live)
    # --since replays the past on a third manager, the same events in the same order
    replay = subprocess.run(
        lab5.exec_argv("h3", ["docker", "events", "--since", f"{t0 - 1:.3f}", "--until",
                              f"{time.time() + 1:.3f}", "--filter", "type=service",
                              "--format", "{{json .}}"]),
        env=lab5.exec_env("h3"), capture_output=True, text=True, timeout=60, check=True)
    past = [json.loads(line) for line in replay.stdout.splitlines() if line.strip()]
    assert actions(past, "marker") == ["create"]
    assert actions(past, "evt") == actions(live, "evt")
    shoal(lab5, "service", "rm", "marker")


def _targets(lab: Lab, port: int) -> list[str]:
    return [f"{lab.address(h)}:{port}" for h in HOSTS]


def test_metrics_move_with_a_scale_and_with_requests(lab5: Lab) -> None:
    shoal(lab5, "service", "create", *EXEC, "--name", "web", "--replicas", "2", "--publish",
          "published=8080,target=80", "shoal", "whoami", "--port", "80")
    shoal(lab5, "service", "scale", "--detach", "web=4")
    until(lambda: len(running(lab5)) == 4, 60, "4 running web tasks")
    leader = until(lambda: next((h for h in MANAGERS
                                 if scrape(lab5, h)[("shoal_raft_leader", ())] == 1), None),
                   30, "a leader's metrics", retry_on=NOT_YET)
    m = until(lambda: (s := scrape(lab5, leader))[("shoal_tasks", (("state", "running"),))]
              == 4 and s, 30, "4 running tasks in the metrics", retry_on=NOT_YET)
    assert m[("shoal_service_running_replicas", (("service", "web"),))] == 4
    assert m[("shoal_service_desired_replicas", (("service", "web"),))] == 4
    assert m[("shoal_nodes", ())] == len(HOSTS)
    assert m[("shoal_dispatcher_sessions", ())] == 2  # the workers' streams
    assert m[("shoal_raft_proposal_duration_seconds_count", ())] > 0
    # a worker: its heartbeats are timed, its mesh has the 4 backends ready
    worker = scrape(lab5, "h5")
    assert worker[("shoal_manager", ())] == 0
    until(lambda: scrape(lab5, "h5")[("shoal_heartbeat_duration_seconds_count", ())] > 0, 30,
          "a heartbeat timed on h5", retry_on=NOT_YET)
    until(lambda: scrape(lab5, "h5")[("shoal_mesh_backends_ready", PORT_8080)] == 4, 30,
          "4 ready backends behind h5:8080", retry_on=NOT_YET)
    before = scrape(lab5, "h5")
    results = probe(lab5, "http", [f"{lab5.address('h5')}:8080"], 20)
    assert all(r["ok"] for r in results), results
    after = until(lambda: (s := scrape(lab5, "h5"))[("shoal_mesh_connections_total", PORT_8080)]
                  >= before[("shoal_mesh_connections_total", PORT_8080)] + 20 and s, 10,
                  "20 more connections counted on h5", retry_on=NOT_YET)
    assert (after[("shoal_mesh_bytes_total", PORT_8080)]
            - before[("shoal_mesh_bytes_total", PORT_8080)]) > 20 * 200
    # the other nodes routed none of these
    h4 = scrape(lab5, "h4")
    assert h4.get(("shoal_mesh_connections_total", PORT_8080), 0) == 0


FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--no-default-browser-check", "--enable-logging=stderr", "--v=0")


def chromium(lab: Lab, profile: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["chromium", *FLAGS, f"--user-data-dir={profile}", *args, "http://127.0.0.1:9323/"]
    return lab.exec("h1", argv, capture=True, timeout=120)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium (setup.sh has it)")
def test_the_dashboard_shows_the_five_nodes(lab5: Lab, tmp_path: Any) -> None:
    until(lambda: len(running(lab5)) == 4, 60, "4 running web tasks")
    proc = chromium(lab5, str(tmp_path / "p1"), "--virtual-time-budget=3000", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines()
              if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    assert errors == []
    for host in HOSTS:
        assert f"shoal-{host}" in proc.stdout, host
    # Leader / Reachable as Raft sees them (`node ls`), not the store's stale copy
    assert proc.stdout.count(">Leader<") == 1 and proc.stdout.count(">Reachable<") == 2
    assert "4/4" in proc.stdout and "every node :8080/tcp" in proc.stdout
    shot = tmp_path / "dashboard.png"
    proc = chromium(lab5, str(tmp_path / "p2"), "--timeout=3000", f"--screenshot={shot}",
                    "--window-size=1100,900")
    assert proc.returncode == 0 and shot.stat().st_size > 0, proc.stderr[-2000:]
    if dest := os.environ.get("SHOAL_DASHBOARD_SCREENSHOT"):  # docs/dashboard.png
        shutil.copy(shot, dest)


def test_the_raft_metrics_follow_a_failover(lab5: Lab) -> None:
    """Last in the module: it kills the leader's daemon."""
    views = {h: scrape(lab5, h) for h in MANAGERS}
    [leader] = [h for h, m in views.items() if m[("shoal_raft_leader", ())] == 1]
    old_id = views[leader][("shoal_raft_leader_id", ())]
    old_term = views[leader][("shoal_raft_term", ())]
    assert {m[("shoal_raft_leader_id", ())] for m in views.values()} == {old_id}
    lab5.kill_daemon(leader, signal.SIGKILL)
    rest = [h for h in MANAGERS if h != leader]

    def new_leader() -> str | None:
        views = {h: scrape(lab5, h) for h in rest}
        leading = [h for h, m in views.items() if m[("shoal_raft_leader", ())] == 1]
        ids = {m[("shoal_raft_leader_id", ())] for m in views.values()}
        return leading[0] if len(leading) == 1 and len(ids) == 1 and old_id not in ids else None

    now = until(new_leader, 60, "a new leader in the survivors' metrics", retry_on=NOT_YET)
    m = scrape(lab5, now)
    assert m[("shoal_raft_term", ())] > old_term
    assert m[("shoal_manager", ())] == 1
