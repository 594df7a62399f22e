"""The real docker CLI drives shoal (issue 6): every command a single-node swarm can do, run
inside a 1-node lab (`DOCKER_HOST` is h1's socket there), checked by its output and by its
effects: requests from the lab's client, the tasks' processes and namespaces, the state the
daemon reports.

The tests of this module share one lab and run in order: the swarm is initialised by the
docker CLI in the first ones, the others build on it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.lab import Lab
from shoal.lab.ask import probe
from shoal.lab.fabric import task_netns_of
from shoal.lab.iproute import list_netns
from tests.integration.conftest import session_lab_tag
from tests.integration.labtools import EXEC, until

pytestmark = pytest.mark.lab

H1 = "198.18.0.11"
POOL = "198.19.0.0/16"  # task networks stay in the lab's range (network safety)


def docker(
    lab: Lab, *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = lab.exec("h1", ["docker", *args], capture=True, timeout=120, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def fails(lab: Lab, *args: str, input: str | None = None) -> str:
    """The error the docker CLI prints for a command that must fail."""
    proc = docker(lab, *args, input=input, check=False)
    assert proc.returncode != 0, f"docker {' '.join(args)} succeeded: {proc.stdout}"
    return proc.stderr


def converged(out: str) -> bool:
    """The end of the CLI's convergence wait (CLI 28 names the service, 20.10 does not)."""
    return re.search(r"^verify: Service (\w+ )?converged$", out, re.M) is not None


def inspect(lab: Lab, kind: str, ref: str) -> Any:
    return json.loads(docker(lab, kind, "inspect", ref).stdout)[0]


def api_tasks(lab: Lab, service_id: str) -> list[dict[str, Any]]:
    return lab.client("h1").get(  # type: ignore[no-any-return]
        "/tasks", params={"filters": {"service": {service_id: True}}}
    )


def running(lab: Lab, service_id: str) -> list[dict[str, Any]]:
    return [
        t
        for t in api_tasks(lab, service_id)
        if t["Status"]["State"] == "running" and t["DesiredState"] == "running"
    ]


def answered_by(lab: Lab, port: int, count: int) -> set[str]:
    """Which tasks answered `count` requests from the client to h1:port (all must answer)."""
    results = probe(lab, "http", [f"{H1}:{port}"], count=count, timeout=2.0)
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    return {
        line.split(": ", 1)[1]
        for r in results
        for line in r["body"].splitlines()
        if line.startswith("task:")
    }


def nobody_answers(lab: Lab, port: int) -> bool:
    return not any(r["ok"] for r in probe(lab, "http", [f"{H1}:{port}"], count=2, timeout=1.0))


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A 1-node lab whose swarm the docker CLI initialises; gone after the module."""
    lab = Lab(session_lab_tag())
    lab.down()
    try:
        lab.up(nodes=1, swarm=False)
        yield lab
    finally:
        lab.down()


# -- before the swarm -------------------------------------------------------------------


def test_version_negotiates_down_to_shoals_api(lab: Lab) -> None:
    out = docker(lab, "version").stdout
    assert "Server: shoal" in out and re.search(
        r"API version:\s+1\.47 \(minimum version 1\.24\)", out
    )
    if "downgraded" in out:  # a client newer than shoal's API (CLI 28 speaks 1.50)
        assert re.search(r"API version:\s+1\.47 \(downgraded from 1\.\d\d\)", out), out
    server = json.loads(docker(lab, "version", "--format", "{{json .Server}}").stdout)
    assert server["ApiVersion"] == "1.47" and server["MinAPIVersion"] == "1.24"
    # an old client (pinned version) is served too
    old = lab.exec(
        "h1", ["env", "DOCKER_API_VERSION=1.24", "docker", "info"], capture=True, timeout=60
    )
    assert old.returncode == 0 and "Swarm: inactive" in old.stdout


def test_outside_a_swarm_manager_commands_say_so(lab: Lab) -> None:
    assert "Swarm: inactive" in docker(lab, "info").stdout
    err = fails(lab, "service", "ls")
    assert "This node is not a swarm manager" in err
    assert docker(lab, "network", "ls", "-q").stdout == ""


def test_unsupported_endpoints_say_shoal_does_not_support_them(lab: Lab) -> None:
    err = fails(lab, "plugin", "ls")
    assert "Error response from daemon: shoal does not support this endpoint" in err
    assert re.search(r"GET /v1\.\d+/plugins", err)


# -- the seed's story -------------------------------------------------------------------


def test_seed_story(lab: Lab) -> None:
    out = docker(lab, "swarm", "init", "--advertise-addr", H1, "--default-addr-pool", POOL).stdout
    node_id = re.search(r"current node \((\w+)\) is now a manager", out)
    assert node_id is not None, out
    assert re.search(rf"docker swarm join --token SWMTKN-1-\S+ {H1}:2377", out)
    info = json.loads(docker(lab, "info", "--format", "{{json .Swarm}}").stdout)
    assert info["LocalNodeState"] == "active" and info["NodeID"] == node_id.group(1)
    assert info["ControlAvailable"] and info["Cluster"]["DefaultAddrPool"] == [POOL]

    # no --detach: the CLI waits for convergence (a short monitor keeps the test fast)
    out = docker(
        lab, "service", "create", *EXEC, "--name", "web", "--replicas", "3",
        "--publish", "published=8080,target=80", "--update-monitor", "1s",
        "shoal", "whoami", "--port", "80",
    ).stdout  # fmt: skip
    service_id = out.splitlines()[0].strip()
    assert re.fullmatch(r"[0-9a-z]{25}", service_id), out
    assert "overall progress: 3 out of 3 tasks" in out and converged(out)
    before = {t["ID"] for t in running(lab, service_id)}
    assert len(before) == 3
    assert answered_by(lab, 8080, 9) == {"web.1", "web.2", "web.3"}

    out = docker(lab, "service", "update", "--publish-add", "published=9090,target=80", "web")
    assert out.stdout.startswith("web\n") and converged(out.stdout)
    assert answered_by(lab, 9090, 9) == {"web.1", "web.2", "web.3"}
    assert answered_by(lab, 8080, 3)
    assert {t["ID"] for t in running(lab, service_id)} == before  # publishing restarts none
    ls = docker(lab, "service", "ls").stdout
    row = next(line for line in ls.splitlines() if " web " in line)
    assert "replicated" in row and "3/3" in row and "shoal:latest" in row
    assert "*:8080->80/tcp, *:9090->80/tcp" in row


# -- swarm and node ---------------------------------------------------------------------


def test_join_tokens(lab: Lab) -> None:
    worker = docker(lab, "swarm", "join-token", "-q", "worker").stdout.strip()
    manager = docker(lab, "swarm", "join-token", "-q", "manager").stdout.strip()
    assert re.fullmatch(r"SWMTKN-1-[0-9a-z]+-[0-9a-z]+", worker)
    assert worker != manager and worker.rsplit("-", 1)[0] == manager.rsplit("-", 1)[0]
    swarm = lab.client("h1").get("/swarm")
    assert swarm["JoinTokens"] == {"Worker": worker, "Manager": manager}
    out = docker(lab, "swarm", "join-token", "manager").stdout
    assert f"docker swarm join --token {manager} {H1}:2377" in out


def test_swarm_update_changes_docker_info(lab: Lab) -> None:
    assert "Task History Retention Limit: 5" in docker(lab, "info").stdout
    assert "Swarm updated." in docker(lab, "swarm", "update", "--task-history-limit", "3").stdout
    assert "Task History Retention Limit: 3" in docker(lab, "info").stdout
    spec = lab.client("h1").get("/swarm")["Spec"]
    assert spec["Orchestration"]["TaskHistoryRetentionLimit"] == 3


def test_node_ls_inspect_ps_update(lab: Lab) -> None:
    rows = docker(lab, "node", "ls").stdout.splitlines()
    assert rows[0].split() == [
        "ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER", "STATUS", "ENGINE", "VERSION"
    ]  # fmt: skip
    assert len(rows) == 2
    node_id, star, hostname, *rest = rows[1].split()
    assert star == "*" and rest[:3] == ["Ready", "Active", "Leader"]
    me = inspect(lab, "node", "self")
    assert me["ID"] == node_id and me["Description"]["Hostname"] == hostname
    assert me["Status"]["Addr"] == H1 and me["ManagerStatus"]["Addr"] == f"{H1}:2377"

    ps = docker(lab, "node", "ps", hostname).stdout.splitlines()
    assert sorted(line.split()[1] for line in ps[1:]) == ["web.1", "web.2", "web.3"]
    assert all("Running" in line for line in ps[1:])

    docker(lab, "node", "update", "--label-add", "zone=a", "--availability", "pause", hostname)
    me = inspect(lab, "node", node_id)
    assert me["Spec"]["Labels"] == {"zone": "a"} and me["Spec"]["Availability"] == "pause"
    assert "Pause" in docker(lab, "node", "ls").stdout
    docker(lab, "node", "update", "--label-rm", "zone", "--availability", "active", hostname)
    me = inspect(lab, "node", node_id)
    assert not me["Spec"].get("Labels") and me["Spec"]["Availability"] == "active"

    # what needs other nodes is refused with Docker's words
    assert "is already a manager" in docker(lab, "node", "promote", hostname).stdout
    assert "demote the last manager of the swarm" in fails(lab, "node", "demote", hostname)
    assert "It must be demoted to worker before removal" in fails(lab, "node", "rm", hostname)


# -- services ---------------------------------------------------------------------------


def test_service_inspect_ps_logs(lab: Lab) -> None:
    svc = inspect(lab, "service", "web")
    assert svc["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
    assert [p["PublishedPort"] for p in svc["Endpoint"]["Ports"]] == [8080, 9090]
    pretty = docker(lab, "service", "inspect", "--pretty", "web").stdout
    assert "Replicas:\t3" in pretty and "PublishedPort = 9090" in pretty
    ps = docker(lab, "service", "ps", "web").stdout.splitlines()[1:]
    assert sorted(line.split()[1] for line in ps) == ["web.1", "web.2", "web.3"]
    logs = docker(lab, "service", "logs", "web").stdout
    for slot in (1, 2, 3):
        assert re.search(rf"^web\.{slot}\.\w+@\S+\s+\| whoami: listening", logs, re.M), logs


def test_service_scale_rollback_and_detached_update(lab: Lab) -> None:
    service_id = inspect(lab, "service", "web")["ID"]
    out = docker(lab, "service", "scale", "web=2").stdout
    assert "web scaled to 2" in out and converged(out)
    assert len(running(lab, service_id)) == 2
    assert answered_by(lab, 8080, 6) == {"web.1", "web.2"}

    out = docker(lab, "service", "rollback", "web").stdout
    assert out.startswith("web\n") and converged(out)
    assert inspect(lab, "service", "web")["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
    until(lambda: len(running(lab, service_id)) == 3, what="3 tasks after the rollback")

    # --detach: the CLI returns at once; the tasks are replaced with the new environment
    before = {t["ID"] for t in running(lab, service_id)}
    out = docker(lab, "service", "update", "--detach", "--env-add", "GREETING=hi", "web")
    assert out.stdout == "web\n"

    def updated() -> list[dict[str, Any]] | None:
        now = running(lab, service_id)
        fresh = [t for t in now if t["ID"] not in before]
        return now if len(fresh) == 3 and len(now) == 3 else None

    tasks = until(updated, what="3 tasks replaced by the update")
    for task in tasks:
        assert environ(task["Status"]["ContainerStatus"]["PID"])["GREETING"] == "hi"


def test_service_rm_leaves_nothing(lab: Lab) -> None:
    service_id = inspect(lab, "service", "web")["ID"]
    task_ids = {t["ID"] for t in api_tasks(lab, service_id)}
    assert docker(lab, "service", "rm", "web").stdout == "web\n"
    assert "Error: no such service: web" in fails(lab, "service", "inspect", "web")
    until(lambda: not api_tasks(lab, service_id), what="web's tasks removed")
    until(lambda: nobody_answers(lab, 8080) and nobody_answers(lab, 9090), what="ports closed")
    netns = set(list_netns())
    assert not {f"shoal-t-{t[:12]}" for t in task_ids} & netns
    assert task_netns_of(lab.layout, "h1") == []


# -- networks, secrets, configs ---------------------------------------------------------


def test_networks(lab: Lab) -> None:
    rows = [line.split() for line in docker(lab, "network", "ls").stdout.splitlines()]
    assert rows[0] == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [r[1:] for r in rows[1:]] == [["ingress", "overlay", "swarm"]]
    net_id = docker(lab, "network", "create", "-d", "overlay", "--label", "team=a", "front")
    net_id_text = net_id.stdout.strip()
    net = inspect(lab, "network", "front")
    assert net["Id"] == net_id_text and net["Scope"] == "swarm" and net["Driver"] == "overlay"
    assert net["Labels"] == {"team": "a"}
    names = docker(lab, "network", "ls", "--filter", "label=team=a", "--format", "{{.Name}}")
    assert names.stdout.split() == ["front"]
    err = fails(lab, "network", "create", "back")  # the CLI's default driver is bridge
    assert "shoal only supports swarm-scoped networks with the overlay driver" in err
    assert "back" not in docker(lab, "network", "ls").stdout
    assert "already exists" in fails(lab, "network", "create", "-d", "overlay", "front")


def test_secrets_and_configs(lab: Lab) -> None:
    secret_id = docker(lab, "secret", "create", "db_pass", "-", input="s3cret").stdout.strip()
    ls = docker(lab, "secret", "ls", "--format", "{{.ID}} {{.Name}}").stdout
    assert ls.split() == [secret_id, "db_pass"]
    raw = docker(lab, "secret", "inspect", "db_pass").stdout
    assert json.loads(raw)[0]["Spec"] == {"Name": "db_pass", "Labels": {}}
    assert "s3cret" not in raw and "czNjcmV0" not in raw  # nor its base64
    err = fails(lab, "secret", "create", "db_pass", "-", input="other")
    assert "secret db_pass already exists" in err

    config_id = docker(lab, "config", "create", "app_cfg", "-", input="a: 1\n").stdout.strip()
    config = inspect(lab, "config", "app_cfg")
    assert config["ID"] == config_id and config["Spec"]["Data"] == "YTogMQo="
    assert "a: 1" in docker(lab, "config", "inspect", "--pretty", "app_cfg").stdout
    assert docker(lab, "config", "ls", "-q").stdout.split() == [config_id]


def test_they_are_kept_across_a_daemon_restart(lab: Lab) -> None:
    def ids() -> list[str]:
        return [
            docker(lab, kind, "ls", "-q").stdout for kind in ("network", "secret", "config")
        ]

    before = ids()
    lab.kill_daemon("h1", signal.SIGTERM)
    lab.start("h1")
    assert ids() == before


def test_a_service_uses_them_and_they_cannot_go_while_it_does(lab: Lab) -> None:
    docker(
        lab, "service", "create", *EXEC, "--detach", "--name", "api", "--network", "front",
        "--secret", "db_pass", "--config", "src=app_cfg,target=/etc/app.yml",
        "shoal", "whoami", "--port", "80",
    )  # fmt: skip
    svc = inspect(lab, "service", "api")
    net_id = inspect(lab, "network", "front")["Id"]
    template = svc["Spec"]["TaskTemplate"]
    assert template["Networks"] == [{"Target": net_id}]
    assert template["ContainerSpec"]["Secrets"][0]["SecretName"] == "db_pass"
    assert template["ContainerSpec"]["Configs"][0]["File"]["Name"] == "/etc/app.yml"
    assert "is in use by service" in fails(lab, "network", "rm", "front")
    assert "is in use by the following service: api" in fails(lab, "secret", "rm", "db_pass")
    assert "is in use by the following service: api" in fails(lab, "config", "rm", "app_cfg")
    docker(lab, "service", "rm", "api")
    assert docker(lab, "network", "rm", "front").stdout == "front\n"
    assert docker(lab, "secret", "rm", "db_pass").stdout == "db_pass\n"
    assert docker(lab, "config", "rm", "app_cfg").stdout == "app_cfg\n"
    assert docker(lab, "network", "ls", "--format", "{{.Name}}").stdout.split() == ["ingress"]
    assert docker(lab, "secret", "ls", "-q").stdout == ""
    assert docker(lab, "config", "ls", "-q").stdout == ""


# -- stacks -----------------------------------------------------------------------------

COMPOSE = """
version: "3.8"
services:
  web:
    image: shoal
    command: ["whoami", "--port", "80"]
    labels: [shoal.runtime=exec]  # a host program, not an image
    environment:
      GREETING: hello
    ports:
      - "8081:80"
    networks: [front]
    secrets: [db_pass]
    configs:
      - source: app_cfg
        target: /etc/app.yml
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        order: start-first
      restart_policy:
        condition: on-failure
        delay: 1s
      placement:
        constraints: [node.role == manager]
  api:
    image: shoal
    command: ["whoami", "--port", "81"]
    labels: [shoal.runtime=exec]
    environment:
      - ROLE=api
    ports:
      - target: 81
        published: 8082
        protocol: tcp
        mode: ingress
    networks: [front, back]
    deploy:
      mode: global
networks:
  front:
    driver: overlay
  back:
    driver: overlay
secrets:
  db_pass:
    file: ./db_pass.txt
configs:
  app_cfg:
    file: ./app.yml
"""


def stack_state(lab: Lab) -> dict[str, list[str]]:
    """What the daemon holds that belongs to stack `shop`, by kind."""
    api = lab.client("h1")
    flt = {"filters": {"label": {"com.docker.stack.namespace=shop": True}}}
    return {
        "services": [s["Spec"]["Name"] for s in api.get("/services", params=flt)],
        "networks": [n["Name"] for n in api.get("/networks", params=flt)],
        "secrets": [s["Spec"]["Name"] for s in api.get("/secrets", params=flt)],
        "configs": [c["Spec"]["Name"] for c in api.get("/configs", params=flt)],
    }


def test_stack_deploy_ls_services_ps_rm(lab: Lab, tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text(COMPOSE)
    (tmp_path / "db_pass.txt").write_text("s3cret")
    (tmp_path / "app.yml").write_text("a: 1\n")
    compose = str(tmp_path / "compose.yml")
    out = docker(lab, "stack", "deploy", "-c", compose, "shop").stdout
    for line in (
        "Creating network shop_front",
        "Creating network shop_back",
        "Creating secret shop_db_pass",
        "Creating config shop_app_cfg",
        "Creating service shop_web",
        "Creating service shop_api",
    ):
        assert line in out, out
    state = stack_state(lab)
    assert sorted(state["networks"]) == ["shop_back", "shop_front"]
    assert state["secrets"] == ["shop_db_pass"] and state["configs"] == ["shop_app_cfg"]

    # (CLI 20.10 adds an ORCHESTRATOR column)
    assert docker(lab, "stack", "ls").stdout.splitlines()[1].split()[:2] == ["shop", "2"]
    services = docker(lab, "stack", "services", "shop", "--format", "{{.Name}} {{.Mode}}")
    assert sorted(services.stdout.splitlines()) == ["shop_api global", "shop_web replicated"]
    web = inspect(lab, "service", "shop_web")
    spec = web["Spec"]
    assert spec["Mode"]["Replicated"]["Replicas"] == 2
    assert spec["TaskTemplate"]["Networks"] == [
        {"Target": inspect(lab, "network", "shop_front")["Id"], "Aliases": ["web"]}
    ]
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role == manager"]
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "on-failure"
    assert spec["UpdateConfig"]["Order"] == "start-first"
    api = inspect(lab, "service", "shop_api")
    assert "Global" in api["Spec"]["Mode"]
    assert api["Endpoint"]["Ports"][0]["PublishedPort"] == 8082

    until(lambda: len(running(lab, web["ID"])) == 2 and running(lab, api["ID"]), what="stack up")
    ps = docker(lab, "stack", "ps", "shop", "--format", "{{.Name}} {{.CurrentState}}").stdout
    assert len(ps.splitlines()) == 3 and all("Running" in line for line in ps.splitlines())
    assert answered_by(lab, 8081, 4) == {"shop_web.1", "shop_web.2"}
    assert len(answered_by(lab, 8082, 2)) == 1
    for task in running(lab, web["ID"]):
        assert environ(task["Status"]["ContainerStatus"]["PID"])["GREETING"] == "hello"
    task_ids = {t["ID"] for sid in (web["ID"], api["ID"]) for t in api_tasks(lab, sid)}

    # deploying again updates in place: nothing is created, no task restarts
    out = docker(lab, "stack", "deploy", "-c", compose, "shop").stdout
    assert "Updating service shop_web" in out and "Creating" not in out
    assert {t["ID"] for sid in (web["ID"], api["ID"]) for t in api_tasks(lab, sid)} == task_ids

    out = docker(lab, "stack", "rm", "shop").stdout
    for line in ("Removing service shop_web", "Removing secret shop_db_pass",
                 "Removing config shop_app_cfg", "Removing network shop_front"):  # fmt: skip
        assert line in out, out
    assert stack_state(lab) == {"services": [], "networks": [], "secrets": [], "configs": []}
    assert docker(lab, "stack", "ls").stdout.splitlines()[1:] == []
    until(lambda: not lab.client("h1").get("/tasks"), what="the stack's tasks removed")
    until(lambda: nobody_answers(lab, 8081) and nobody_answers(lab, 8082), what="ports closed")
    assert not {f"shoal-t-{t[:12]}" for t in task_ids} & set(list_netns())
    assert task_netns_of(lab.layout, "h1") == []
    assert "nothing found in stack: shop" in fails(lab, "stack", "ps", "shop")
