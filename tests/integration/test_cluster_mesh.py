"""Issue 5's acceptance in a 5-node lab: every node routes a published port to the tasks of
every node, over the VXLAN overlay, with endpoints spread by gossip.

Figures (answers per task, time to publish on the last node, failures under load, failover
after a node stops) are printed; run with `-s` to see them. Each request of the load has a
3 s timeout: a SYN retransmitted after 1 s on this busy machine is latency, not a failure.
The rollout tests (issue 14) run two loads at once: new connections, and 2 long-lived
keep-alive connections per node sending a request every 50 ms; both must lose nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.lab import Lab, images
from shoal.lab.ask import probe
from tests.integration.labtools import EXEC, Load, host_of, running, shoal, until

pytestmark = pytest.mark.lab

HOSTS = ["h1", "h2", "h3", "h4", "h5"]
REGISTRY = "198.18.0.3:5000"


def _targets(lab: Lab, port: int, hosts: list[str] = HOSTS) -> list[str]:
    return [f"{lab.address(h)}:{port}" for h in hosts]


def _both_loads(lab: Lab, port: int) -> Load:
    """New-connection load and 2 keep-alive connections per node, on every node."""
    return Load(lab, "http", _targets(lab, port), keepalive=2)


def _assert_nothing_lost(summary: dict[str, Any], what: str) -> None:
    kept = summary["keepalive"]
    print(f"\n{what}: {summary['total']} new-connection requests in {summary['seconds']}s, "
          f"{summary['failed']} failed; keep-alive: {kept['requests']} requests on "
          f"{kept['connections']} connections, {kept['failed']} failed, {kept['resets']} "
          f"resets, {kept['reconnects']} graceful closes (reconnected)")
    assert summary["total"] > 1000 and kept["requests"] > 1000, summary
    assert summary["failed"] == 0, summary["failures"][:10]
    assert kept["failed"] == 0, kept["failures"][:10]


def _answers(results: list[dict[str, object]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for r in results:
        assert r["ok"], r
        body = str(r["body"])
        out[body.splitlines()[0].removeprefix("hostname: ")] += 1
    return out


@pytest.fixture(scope="module")
def lab5(lab_tag: str) -> Iterator[Lab]:
    lab = Lab(lab_tag + "c")
    lab.down()
    try:
        lab.up(nodes=5)
        shoal(lab, "service", "create", *EXEC, "--name", "web", "--replicas", "3", "--publish",
              "published=8080,target=80", "--publish", "published=5353,target=53,protocol=udp",
              "shoal", "whoami", "--port", "80", "--udp-port", "53")
        until(lambda: len(running(lab)) == 3, what="3 running web tasks")
        yield lab
    finally:
        lab.down()


def test_every_node_answers_from_all_three_tasks(lab5: Lab) -> None:
    tasks = running(lab5)
    assert len({t["NodeID"] for t in tasks}) == 3  # three different nodes
    names = {t["ID"][:12] for t in tasks}
    with_task = {host_of(lab5, t["NodeID"]) for t in tasks}
    print(f"\ntasks on {sorted(with_task)}; nodes without a task: "
          f"{sorted(set(HOSTS) - with_task)}")
    # the mesh may take a moment after "running" to have every endpoint on every node
    until(lambda: all(_answers(probe(lab5, "http", [t], 6)).keys() == names
                      for t in _targets(lab5, 8080)), what="all tasks behind every node")
    for host, target in zip(HOSTS, _targets(lab5, 8080), strict=True):
        answers = _answers(probe(lab5, "http", [target], 100))
        print(f"{host}: 100 requests -> {dict(answers)}")
        assert sum(answers.values()) == 100 and set(answers) == names


def test_udp_answers_on_every_node_from_all_tasks(lab5: Lab) -> None:
    names = {t["ID"][:12] for t in running(lab5)}
    for target in _targets(lab5, 5353):
        answers = _answers(probe(lab5, "udp", [target], 30))
        assert set(answers) == names, (target, answers)


def test_publish_add_answers_on_every_node(lab5: Lab) -> None:
    began = time.monotonic()
    shoal(lab5, "service", "update", "--detach", "--publish-add", "published=9090,target=80",
          "web")
    command = time.monotonic() - began
    pending = set(_targets(lab5, 9090))
    answered_at: dict[str, float] = {}
    deadline = began + 30

    while pending and time.monotonic() < deadline:
        for result in probe(lab5, "http", sorted(pending), 1, timeout=1.0):
            if result["ok"]:
                answered_at[str(result["target"])] = time.monotonic() - began
                pending.discard(str(result["target"]))
    assert not pending, f"9090 never answered on {sorted(pending)}"
    print(f"\npublish-add: command {command:.2f}s; 9090 answering on the last of 5 nodes "
          f"{max(answered_at.values()):.2f}s after the command started")


def test_scale_and_rolling_update_under_load_fail_nothing(lab5: Lab) -> None:
    load = _both_loads(lab5, 8080)
    try:
        time.sleep(1)
        shoal(lab5, "service", "scale", "web=6")
        shoal(lab5, "service", "scale", "web=2")
        shoal(lab5, "service", "update", "--force", "web")
        time.sleep(1)
    finally:
        summary = load.stop()
    _assert_nothing_lost(summary, "scale 6, scale 2, update --force (stop-first x1)")
    shoal(lab5, "service", "scale", "web=3")
    until(lambda: len(running(lab5)) == 3, what="web back to 3")


def test_start_first_all_at_once_and_rollback_under_load_fail_nothing(lab5: Lab) -> None:
    """Issue 14: start-first with parallelism = replicas keeps every node routing (the old
    tasks stay in the mesh until their replacements run); env update, forced update and a
    rollback, under load on every node."""
    load = _both_loads(lab5, 8080)
    try:
        time.sleep(1)
        shoal(lab5, "service", "update", "--update-order", "start-first",
              "--update-parallelism", "3", "--rollback-order", "start-first",
              "--rollback-parallelism", "3", "--env-add", "ROLL=1", "web")
        shoal(lab5, "service", "update", "--force", "web")
        shoal(lab5, "service", "rollback", "web")
        time.sleep(1)
    finally:
        summary = load.stop()
    _assert_nothing_lost(summary, "start-first x3 env update, --force, rollback")
    assert _update_state(lab5, "web") == "rollback_completed"
    until(lambda: len(running(lab5)) == 3, what="web back to 3")


def test_start_first_one_by_one_and_scale_under_load_fail_nothing(lab5: Lab) -> None:
    load = _both_loads(lab5, 8080)
    try:
        time.sleep(1)
        shoal(lab5, "service", "update", "--update-order", "start-first",
              "--update-parallelism", "1", "--env-add", "ROLL=2", "web")
        shoal(lab5, "service", "scale", "web=5")
        shoal(lab5, "service", "scale", "web=3")
        shoal(lab5, "service", "update", "--force", "web")
        time.sleep(1)
    finally:
        summary = load.stop()
    _assert_nothing_lost(summary, "start-first x1 env update, scale 5, scale 3, --force")
    until(lambda: len(running(lab5)) == 3, what="web back to 3")


def _update_state(lab: Lab, service: str) -> str:
    status = lab.client("h1").get(f"/services/{service}").get("UpdateStatus") or {}
    return str(status.get("State", ""))


def _unhealthy_task_ids(lab: Lab, service: str) -> set[str]:
    tasks = lab.client("h1").get("/tasks", params={"filters": {"service": {service: True}}})
    return {t["ID"][:12] for t in tasks
            if (t["Spec"]["ContainerSpec"].get("HealthCheck") or {}).get("Test")}


def test_never_healthy_updates_roll_back_or_pause_under_load_fail_nothing(lab5: Lab) -> None:
    """Issue 14: a new version whose health check always fails never gets a request; with
    --update-failure-action rollback the service returns to its previous spec
    (rollback_completed), with pause the update stops (paused) until `service rollback`."""
    bad = ["--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1"]
    bad_tasks: set[str] = set()  # gathered while they exist: failed tasks are pruned later

    def reached(state: str) -> bool:
        bad_tasks.update(_unhealthy_task_ids(lab5, "web"))
        return _update_state(lab5, "web") == state

    load = _both_loads(lab5, 8080)
    try:
        time.sleep(1)
        shoal(lab5, "service", "update", "--detach", *bad, "--update-failure-action",
              "rollback", "--update-order", "start-first", "--update-parallelism", "1", "web")
        until(lambda: reached("rollback_completed"), timeout=60,
              what="the unhealthy update rolled back")
        spec = lab5.client("h1").get("/services/web")["Spec"]
        assert "HealthCheck" not in spec["TaskTemplate"]["ContainerSpec"], spec
        shoal(lab5, "service", "update", "--detach", *bad, "--update-failure-action",
              "pause", "--update-order", "stop-first", "web")
        until(lambda: reached("paused"), timeout=60, what="the unhealthy update paused")
        shoal(lab5, "service", "rollback", "web")
        time.sleep(1)
    finally:
        summary = load.stop()
    _assert_nothing_lost(summary, "unhealthy update -> rollback; unhealthy update -> pause, "
                         "service rollback")
    assert bad_tasks, "no task of the unhealthy versions was ever seen"
    answered = set(summary["answers"]) | set(summary["keepalive"]["answers"])
    assert not answered & bad_tasks, answered & bad_tasks
    assert _update_state(lab5, "web") == "rollback_completed"
    until(lambda: len(running(lab5)) == 3, what="web back to 3")


def test_global_updates_both_orders_and_rollback_under_load_fail_nothing(lab5: Lab) -> None:
    """Issue 14: a global service is replaced node by node (stop-first, parallelism 1), all
    at once start-first, and rolled back, under load on every node."""
    shoal(lab5, "service", "create", *EXEC, "--name", "edge", "--mode", "global", "--publish",
          "published=8081,target=80", "shoal", "whoami", "--port", "80")
    until(lambda: len(running(lab5, "edge")) == 5, what="5 running edge tasks")
    load = _both_loads(lab5, 8081)
    try:
        time.sleep(1)
        shoal(lab5, "service", "update", "--env-add", "ROLL=1", "edge")
        shoal(lab5, "service", "update", "--update-order", "start-first",
              "--update-parallelism", "0", "--force", "edge")
        shoal(lab5, "service", "rollback", "edge")
        time.sleep(1)
    finally:
        summary = load.stop()
        shoal(lab5, "service", "rm", "edge", check=False)
    _assert_nothing_lost(summary, "global: stop-first x1 env update, start-first all-at-once "
                         "--force, rollback")


def test_local_policy_update_under_load_fail_nothing(lab5: Lab) -> None:
    """Issue 14: a global service with the local traffic policy, updated start-first: each
    node routes only to its own task; the replacement is ready before the old one drains
    (and the draining one stays usable as the node's terminating fallback)."""
    shoal(lab5, "service", "create", *EXEC, "--name", "near", "--mode", "global", "--label",
          "shoal.mesh.traffic-policy=local", "--update-order", "start-first",
          "--update-parallelism", "0", "--publish", "published=8082,target=80",
          "shoal", "whoami", "--port", "80")
    until(lambda: len(running(lab5, "near")) == 5, what="5 running near tasks")
    load = _both_loads(lab5, 8082)
    try:
        time.sleep(1)
        shoal(lab5, "service", "update", "--env-add", "ROLL=1", "near")
        shoal(lab5, "service", "update", "--force", "--update-parallelism", "1", "near")
        time.sleep(1)
    finally:
        summary = load.stop()
        shoal(lab5, "service", "rm", "near", check=False)
    _assert_nothing_lost(summary, "local policy global: start-first all-at-once env update, "
                         "start-first x1 --force")


def test_image_updates_and_rollback_of_containers_under_load_fail_nothing(lab5: Lab) -> None:
    """Issue 14 with real containers: a service of an image from the lab registry updated to
    another image (stop-first x1, the default), back start-first all at once, then rolled
    back, under both loads on every node."""
    client = lab5.layout.netns("client")
    images.push("whoami", f"{REGISTRY}/whoami:1", netns=client)
    images.push("whoami-v2", f"{REGISTRY}/whoami:2", netns=client)
    shoal(lab5, "service", "create", "--name", "img", "--replicas", "3", "--publish",
          "published=8082,target=80", "--update-monitor", "1s", "--rollback-monitor", "1s",
          "--init", f"{REGISTRY}/whoami:1")  # httpd as pid 1 would ignore SIGTERM
    until(lambda: len(running(lab5, "img")) == 3, timeout=90, what="3 running img tasks")
    load = _both_loads(lab5, 8082)
    try:
        time.sleep(1)
        shoal(lab5, "service", "update", "--image", f"{REGISTRY}/whoami:2", "img")
        shoal(lab5, "service", "update", "--update-order", "start-first",
              "--update-parallelism", "3", "--image", f"{REGISTRY}/whoami:1", "img")
        shoal(lab5, "service", "rollback", "img")
        time.sleep(1)
    finally:
        summary = load.stop()
    try:
        _assert_nothing_lost(summary, "image update stop-first x1, image update start-first "
                             "x3, rollback (containers)")
        images_run = {t["Spec"]["ContainerSpec"]["Image"].split("@")[0]
                      for t in running(lab5, "img")}
        assert images_run == {f"{REGISTRY}/whoami:2"}, images_run
    finally:
        shoal(lab5, "service", "rm", "img", check=False)


def test_a_stopped_node_fails_over_in_seconds(lab5: Lab) -> None:
    tasks = running(lab5)
    victim = host_of(lab5, tasks[0]["NodeID"])
    if victim == "h1":  # keep the manager: the swarm must replace the task
        victim = host_of(lab5, tasks[1]["NodeID"])
    others = [h for h in HOSTS if h != victim]
    load = Load(lab5, "http", _targets(lab5, 8080, others))
    try:
        time.sleep(2)
        stopped = time.monotonic() - load.started
        lab5.stop(victim)
        time.sleep(25)
    finally:
        summary = load.stop()
        lab5.start(victim)
    # a timed-out request is recorded when its 3 s timeout ends: it was sent 3 s earlier
    sent = [f[0] - 3.0 if f[2].startswith("timeout") else f[0] for f in summary["failures"]]
    last = max(sent, default=stopped)
    print(f"\nlab stop {victim} (ran a task) under load: {summary['failed']} of "
          f"{summary['total']} requests failed; the last one was sent "
          f"{last - stopped:.1f}s after the stop")
    before = [f for f, at in zip(summary["failures"], sent, strict=True) if at < stopped]
    if before:  # seen twice after earlier tests' services were removed: not understood yet
        print(f"{len(before)} failed before the stop: {before[:5]}")
    # the dead task leaves every node's mesh within seconds (gossip declares its node dead)
    assert last - stopped < 15, summary["failures"][-5:]
    for target in _targets(lab5, 8080, others):
        assert all(r["ok"] for r in probe(lab5, "http", [target], 10, timeout=3.0)), target


def test_data_path_port_and_address_pool_as_swarm_init_sets_them(lab_tag: str) -> None:
    lab = Lab(lab_tag + "p")
    lab.down()
    try:
        lab.up(nodes=2, swarm=False)
        shoal(lab, "swarm", "init", "--advertise-addr", lab.address("h1"),
              "--data-path-port", "4790", "--default-addr-pool", "198.19.128.0/17")
        lab.join("h2")
        subnets = [n["Subnet"] for n in lab.client("h1").get("/nodes")]
        assert len(subnets) == 2 and all(s.startswith("198.19.1") and
                                         int(s.split(".")[2]) >= 128 for s in subnets), subnets
        shoal(lab, "service", "create", *EXEC, "--name", "one", "--constraint",
              "node.hostname==shoal-h2", "--publish", "published=8080,target=80",
              "shoal", "whoami", "--port", "80")
        until(lambda: len(running(lab, "one")) == 1, what="the task on h2")
        # h1 has no task: its answers cross the overlay, on UDP 4790
        until(lambda: all(r["ok"] for r in probe(lab, "http", [f"{lab.address('h1')}:8080"])),
              what="h1 answering from h2's task")
        link = lab.exec("h1", ["ip", "-d", "link", "show", "shoal.4096"], capture=True)
        assert "dstport 4790" in link.stdout, link.stdout
    finally:
        lab.down()
