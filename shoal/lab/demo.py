"""`shoal lab demo`: the README's story of the routing mesh, told on a lab.

lab up (5 hosts by default) -> the offline `whoami` image pushed to the lab registry
(198.18.0.3:5000) -> a `web` service of 3 replicas of that image (runc containers) published
on 8080 -> requests from the client to every host, also those without a task, each line
saying which task answered (the container's hostname is its task id, as in swarm) ->
`service update --publish-add published=9090,target=80 web` ->
requests on 9090 -> one host that runs a task stopped: traffic goes on through the others,
and the swarm replaces the task -> lab down (unless --keep). Everything waits on conditions
with deadlines; every request has a timeout.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import click

from shoal.client import Client
from shoal.errors import ShoalError, Unavailable
from shoal.lab import images
from shoal.lab.ask import probe
from shoal.lab.lab import Lab, status_table
from shoal.lab.layout import CLIENT
from shoal.lab.procs import LAB_REGISTRY

__all__ = ["IMAGE", "REPLICAS", "push_image", "run_demo", "wait_for", "web_spec"]

REPLICAS = 3
REQUESTS = 9
IMAGE = f"{LAB_REGISTRY}/whoami"  # 198.18.0.3:5000/whoami, pushed by the demo
T = TypeVar("T")


def web_spec() -> dict[str, Any]:
    return {
        "Name": "web",
        "TaskTemplate": {"ContainerSpec": {"Image": IMAGE}},
        "Mode": {"Replicated": {"Replicas": REPLICAS}},
        "EndpointSpec": {"Ports": [_port(8080)]},
    }


def push_image(lab: Lab) -> None:
    """Build the offline whoami image (busybox-static + umoci) and push it to the lab's
    registry from the client namespace, as a user's `docker push` would."""
    _step(f"The whoami image (busybox httpd + a CGI, built offline) pushed to {LAB_REGISTRY}")
    _cmd(f"skopeo copy oci:/var/tmp/shoal-images/whoami-...:latest docker://{IMAGE}:latest"
         "    # from `client`, = docker push")
    images.push("whoami", f"{IMAGE}:latest", netns=lab.layout.netns(CLIENT))
    _say(f"  {IMAGE}:latest pushed")


def _port(published: int) -> dict[str, Any]:
    return {
        "Protocol": "tcp",
        "TargetPort": 80,
        "PublishedPort": published,
        "PublishMode": "ingress",
    }


def _say(text: str = "", **style: Any) -> None:
    click.secho(text, **style)


def _step(text: str) -> None:
    _say()
    _say("== " + text, bold=True)


def _cmd(text: str) -> None:
    _say("$ " + text, fg="cyan")


def wait_for(what: str, check: Callable[[], T | None], timeout: float) -> T:
    """Poll `check` until it returns a value; Unavailable naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise Unavailable(f"demo: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _fields(body: str) -> dict[str, str]:
    pairs = (line.partition(":") for line in body.splitlines())
    return {key.strip(): value.strip() for key, _, value in pairs}


def _running_tasks(api: Client, service: str) -> list[dict[str, Any]] | None:
    tasks = api.get("/tasks", {"filters": {"service": [service], "desired-state": ["running"]}})
    running = [t for t in tasks if t.get("Status", {}).get("State") == "running"]
    return running if len(running) >= REPLICAS else None


def _host_of(lab: Lab, address: str) -> str:
    return next((h for h in lab.hosts() if lab.address(h) == address), address)


def _task_names(api: Client) -> dict[str, tuple[str, str]]:
    """Container hostname (task id[:12]) -> (task name `web.N.<id>`, node hostname)."""
    nodes = {n["ID"]: n["Description"]["Hostname"] for n in api.get("/nodes")}
    tasks = api.get("/tasks", {"filters": {"service": ["web"]}})
    return {
        t["ID"][:12]: (f"web.{t.get('Slot')}.{t['ID'][:12]}", nodes.get(t.get("NodeID"), "?"))
        for t in tasks
    }


def _requests(lab: Lab, api: Client, port: int, hosts: list[str] | None = None) -> None:
    targets = [f"{lab.address(h)}:{port}" for h in hosts or lab.hosts()]
    wait_for(
        f"the mesh to answer on port {port}",
        lambda: True if all(r["ok"] for r in probe(lab, "http", targets)) else None,
        timeout=30,
    )
    _cmd(f"for i in $(seq {REQUESTS}); do curl -s HOST:{port}; done    # from `client`")
    answered: Counter[str] = Counter()
    names = _task_names(api)
    for result in probe(lab, "http", targets, REQUESTS):
        address = result["target"].rsplit(":", 1)[0]
        prefix = f"  {_host_of(lab, address)} {result['target']} -> "
        if not result["ok"]:
            _say(prefix + f"FAILED: {result.get('error') or result.get('status')}", fg="red")
            continue
        hostname = _fields(result["body"]).get("Hostname", "?")
        task, node = names.get(hostname, (f"? (hostname {hostname})", "?"))
        answered[task.rpartition(".")[0] or task] += 1
        _say(prefix + f"task {task} on {node}")
    summary = ", ".join(f"{task} x{n}" for task, n in sorted(answered.items()))
    _say(f"  {sum(answered.values())} answers from {len(answered)} task(s): {summary}", fg="green")


def _create(api: Client) -> str:
    _step(f"A service of {REPLICAS} whoami replicas, published on port 8080 of every node")
    _cmd(f"shoal service create --name web --replicas 3 --publish published=8080,target=80 {IMAGE}")
    created = api.post("/services/create", web_spec())
    service_id = str(created["ID"])
    _say(f"  service web: {service_id}")
    tasks = wait_for("3 running tasks", lambda: _running_tasks(api, "web"), timeout=120)
    nodes = {n["ID"]: n["Description"]["Hostname"] for n in api.get("/nodes")}
    for task in sorted(tasks, key=lambda t: t.get("Slot", 0)):
        where = nodes.get(task.get("NodeID"), task.get("NodeID"))
        _say(f"  task web.{task.get('Slot')}.{task['ID'][:12]} running on {where}")
    return service_id


def _publish_9090(api: Client, service_id: str) -> None:
    _step("Publish the service on a second port, live")
    _cmd("shoal service update --publish-add published=9090,target=80 web")
    service = api.get(f"/services/{service_id}")
    spec = service["Spec"]
    ports = spec.setdefault("EndpointSpec", {}).setdefault("Ports", [])
    ports.append(_port(9090))
    api.post(
        f"/services/{service_id}/update",
        spec,
        params={"version": service["Version"]["Index"]},
    )

    def published() -> bool | None:
        ports = api.get(f"/services/{service_id}").get("Endpoint", {}).get("Ports") or []
        return True if any(p.get("PublishedPort") == 9090 for p in ports) else None

    wait_for("port 9090 to be published", published, timeout=30)
    _say("  web now publishes 8080->80 and 9090->80")


def _tasks_by_host(lab: Lab, api: Client) -> dict[str, list[str]]:
    names = {n["ID"]: n["Description"]["Hostname"] for n in api.get("/nodes")}
    out: dict[str, list[str]] = {}
    for task in _running_tasks(api, "web") or []:
        host = names.get(task.get("NodeID"), "").removeprefix("shoal-")
        out.setdefault(host, []).append(f"web.{task.get('Slot')}")
    return out


def _where(lab: Lab, api: Client, off: str = "") -> None:
    tasks = _tasks_by_host(lab, api)
    for host in lab.hosts():
        what = ", ".join(sorted(tasks[host])) if host in tasks else "no task"
        _say(f"  {host} {lab.address(host)}: " + ("powered off" if host == off else what))


def _stop_one(lab: Lab, api: Client) -> None:
    tasks = _tasks_by_host(lab, api)
    victim = next((h for h in sorted(tasks) if h != "h1"), None)
    if victim is None or len(lab.hosts()) < 2:
        return  # a 1-node lab has no other host to carry the traffic
    _step(f"Power off {victim}, which runs {', '.join(tasks[victim])}: the others carry on")
    _cmd(f"shoal lab stop {victim}")
    lab.stop(victim)
    began = time.monotonic()
    others = [h for h in lab.hosts() if h != victim]
    targets = [f"{lab.address(h)}:8080" for h in others]
    wait_for(
        "every other host to answer again",
        lambda: True if all(r["ok"] for r in probe(lab, "http", targets, 3, 1.0)) else None,
        timeout=60,
    )
    _say(f"  all {len(others)} other hosts answer every request again after "
         f"{time.monotonic() - began:.1f}s")
    _requests(lab, api, 8080, others)
    _say(f"  meanwhile the managers miss {victim}'s heartbeats, mark it down and replace "
         "its task elsewhere...")

    def replaced() -> bool | None:
        tasks = _tasks_by_host(lab, api)
        moved = victim not in tasks and sum(len(t) for t in tasks.values()) >= REPLICAS
        return True if moved else None

    wait_for(f"{REPLICAS} running tasks away from {victim}", replaced, timeout=120)
    _say(f"  the swarm replaced the task ({time.monotonic() - began:.1f}s after the stop):")
    _where(lab, api, off=victim)


def _observe(lab: Lab) -> None:
    """Where to watch the swarm, and the doctor's table of the cluster ports from h1."""
    _step("Watching the swarm: every host serves a dashboard and Prometheus metrics on "
          "127.0.0.1:9323 in its own namespace")
    _say("  dashboard: http://127.0.0.1:9323/ on any host, e.g. h1's (the JSON it polls):")
    _cmd("shoal lab exec h1 -- curl -s 127.0.0.1:9323/dashboard.json")
    _cmd("shoal lab exec h1 -- curl -s 127.0.0.1:9323/metrics")
    _step("shoal doctor on h1: every cluster port to every node")
    _cmd("shoal lab exec h1 -- shoal doctor")
    proc = lab.exec("h1", ["shoal", "doctor", "--timeout", "1"], capture=True, timeout=60)
    for line in (proc.stdout or proc.stderr).splitlines():
        _say("  " + line)


def run_demo(lab: Lab, nodes: int = 5, keep: bool = False, managers: int | None = None) -> None:
    """Tell the story on `lab`; it is brought down at the end unless `keep`."""
    managers = min(3, nodes) if managers is None else managers
    _step(f"A lab of {nodes} host(s), {managers} of them Raft managers, on fabric "
          "198.18.0.0/24, and a client at 198.18.0.2")
    _cmd(f"shoal lab up --nodes {nodes} --managers {managers}")
    lab.up(nodes, managers)
    for line in status_table(lab.status()).splitlines():
        _say("  " + line)
    try:
        push_image(lab)
        with lab.client("h1") as api:
            service_id = _create(api)
            _where(lab, api)
            _step("Requests from the client to port 8080 of every host, with a task or not")
            _requests(lab, api, 8080)
            _publish_9090(api, service_id)
            _step("Requests from the client to port 9090 of every host")
            _requests(lab, api, 9090)
            _stop_one(lab, api)
            _observe(lab)
    except ShoalError as exc:
        _say(f"demo failed: {exc}", fg="red", err=True)
        raise
    finally:
        if keep:
            _step("The lab stays up (--keep)")
            _cmd("shoal lab exec client -- curl -s 198.18.0.11:8080")
            _say("  `shoal lab down` removes it.")
        else:
            _step("Tearing the lab down")
            _cmd("shoal lab down")
            lab.down()
    _say()
    _say("demo: done", bold=True)
