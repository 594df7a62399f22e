"""Issue 12's acceptance as a user runs it: `docker stack deploy` (the real docker CLI on h1)
of a front (published 8080) that answers each request by calling `back` by name, a back of
3 replicas on the stack's own network, and a third service on another network of the file,
`--internal` (and `early`, whose program resolves its own hostname in its first instant: the
interfaces and the DNS socket exist before a task's program starts).

Three nodes; the images come from the lab registry (198.18.0.3:5000, pushed from the
client namespace). From the client every node's 8080 answers through every back task; the
other network's service cannot resolve or reach back. Then, under steady load from the
front task to back's VIP, back is scaled 3 -> 6 -> 2 and rolled: `tasks.back` converges to
exactly the running (healthy) tasks after each step and not one request fails.

All traffic stays in the lab's namespaces (networks from the default pool 198.18.0.0/15);
the lab's DNS has no forwarder, so no query leaves the lab.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.lab import Lab
from shoal.lab import images as test_images
from shoal.lab.ask import probe
from shoal.lab.layout import CLIENT
from shoal.lab.procs import LAB_REGISTRY
from tests.integration.labtools import host_of, until

pytestmark = pytest.mark.lab

NODES = ("198.18.0.11", "198.18.0.12", "198.18.0.13")
# back is ready once its httpd answers (no published port: nothing else tells readiness)
HEALTH = "printf 'GET / HTTP/1.0\\\\r\\\\n\\\\r\\\\n' | nc -w 1 127.0.0.1 80 | grep -q Hostname"
# resolves its own hostname and lists its interfaces the moment it starts ($$: compose's $)
EARLY = "nslookup $$(hostname) >/tmp/first 2>&1; ip -4 -o addr >/tmp/ifs; exec sleep 900"
COMPOSE = f"""
version: "3.8"
services:
  front:
    image: {LAB_REGISTRY}/front:1
    ports: ["8080:80"]
    deploy:
      placement:
        constraints: [node.hostname == shoal-h1]
  back:
    image: {LAB_REGISTRY}/whoami:1
    healthcheck:
      test: ["CMD-SHELL", "{HEALTH}"]
      interval: 1s
      timeout: 2s
      retries: 2
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
  early:
    image: {LAB_REGISTRY}/front:1
    command: ["sh", "-c", "{EARLY}"]
  other:
    image: {LAB_REGISTRY}/front:1
    networks: [othernet]
    deploy:
      placement:
        constraints: [node.hostname == shoal-h2]
networks:
  othernet:
    driver: overlay
    internal: true
"""
# from a task: one GET to the VIP per iteration until /tmp/stop exists; counts at the end
LOAD = (
    "ok=0; bad=0; rm -f /tmp/stop; while [ ! -e /tmp/stop ]; do "
    "out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 3 \"$0\" 80 | grep Hostname:); "
    "if [ -n \"$out\" ]; then ok=$((ok+1)); else bad=$((bad+1)); echo \"bad at $(date +%T)\"; fi; "
    "done; echo \"ok=$ok bad=$bad\""
)
GET = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 2 "$0" 80'


@pytest.fixture(scope="module")
def stack(lab_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(lab_tag + "k")
    lab.down()
    try:
        lab.up(nodes=3)
        for name in ("front", "whoami"):
            test_images.push(name, f"{LAB_REGISTRY}/{name}:1", netns=lab.layout.netns(CLIENT))
        compose = tmp_path_factory.mktemp("stack") / "stack.yml"
        compose.write_text(COMPOSE)
        _docker(lab, "stack", "deploy", "-c", str(compose), "st")
        yield lab
    finally:
        lab.down()


def _docker(lab: Lab, *args: str, check: bool = True) -> str:
    proc = lab.exec("h1", ["docker", *args], capture=True, timeout=120)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return str(proc.stdout) + ("" if check else str(proc.stderr))


def _service(lab: Lab, name: str) -> dict[str, Any]:
    return lab.client("h1").get(f"/services/{name}")  # type: ignore[no-any-return]


def _running(lab: Lab, name: str) -> list[dict[str, Any]]:
    flt = {"filters": {"service": {name: True}}}
    return [t for t in lab.client("h1").get("/tasks", params=flt)
            if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]


def _addr(task: dict[str, Any]) -> str:
    return str(task["NetworksAttachments"][0]["Addresses"][0].split("/")[0])


def _in(lab: Lab, task: dict[str, Any], *argv: str, timeout: float = 30) -> str:
    host = host_of(lab, task["NodeID"])
    proc = lab.exec(host, ["docker", "exec", task["ID"][:12], *argv], capture=True,
                    timeout=timeout)
    return str(proc.stdout) + str(proc.stderr)


def _answer(nslookup: str) -> list[str]:
    """The answer's addresses in busybox nslookup's output (after the server's lines)."""
    answer = nslookup.split("Name:", 1)[1] if "Name:" in nslookup else ""
    return sorted(w for w in answer.split() if w.count(".") == 3 and w[0].isdigit())


def _up(lab: Lab, name: str, count: int) -> list[dict[str, Any]]:
    return until(lambda: len(r := _running(lab, name)) == count and r, 120,
                 f"{count} {name} running")


def _tasks_back_is(lab: Lab, front: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
    want = sorted(_addr(t) for t in tasks)
    until(lambda: _answer(_in(lab, front, "nslookup", "tasks.back")) == want, 30,
          f"tasks.back = {want}")


def test_every_node_answers_through_every_back_task_and_other_networks_cannot(
    stack: Lab,
) -> None:
    names = set(_docker(stack, "network", "ls", "--format", "{{.Name}}").split())
    assert {"st_default", "st_othernet"} <= names
    back_spec = _service(stack, "st_back")
    [attachment] = back_spec["Spec"]["TaskTemplate"]["Networks"]
    assert attachment["Aliases"] == ["back"]  # the stack's short name
    [front] = _up(stack, "st_front", 1)
    backs = _up(stack, "st_back", 3)
    [other] = _up(stack, "st_other", 1)
    [vip] = [v["Addr"].split("/")[0] for v in back_spec["Endpoint"]["VirtualIPs"]]
    # names on the stack's network: short name, stack-scoped name, tasks., PTR
    until(lambda: _answer(_in(stack, front, "nslookup", "back")) == [vip], 30, "back -> VIP")
    assert _answer(_in(stack, front, "nslookup", "st_back")) == [vip]
    _tasks_back_is(stack, front, backs)
    ptr = _in(stack, front, "nslookup", _addr(backs[0]))
    assert f"{backs[0]['ID']}.st_default" in ptr, ptr
    # a program that resolves at once: its interfaces and 127.0.0.11 were there before it
    [early] = _up(stack, "st_early", 1)
    first = until(lambda: _in(stack, early, "cat", "/tmp/first") or None, 30, "early's lookup")
    assert _answer(first) == [_addr(early)], first  # its own hostname: its own address
    assert _addr(early) in _in(stack, early, "cat", "/tmp/ifs")
    # a service with no task has a name (the managers' records), tasks.X is empty
    _docker(stack, "service", "create", "-d", "--name", "ghost", "--replicas", "0",
            "--network", "st_default", f"{LAB_REGISTRY}/whoami:1")
    [ghost_vip] = [v["Addr"].split("/")[0]
                   for v in _service(stack, "ghost")["Endpoint"]["VirtualIPs"]]
    until(lambda: _answer(_in(stack, front, "nslookup", "ghost")) == [ghost_vip], 30,
          "ghost -> its VIP without a task")
    assert _answer(_in(stack, front, "nslookup", "tasks.ghost")) == []
    _docker(stack, "service", "rm", "ghost")
    # from the client, every node's 8080, through every back task
    hostnames = {t["ID"][:12] for t in backs}
    for node in NODES:
        results = until(lambda n=node: (r := probe(stack, "http", [f"{n}:8080"], count=6,
                                                    timeout=5.0)) and all(x["ok"] for x in r)
                        and r, 60, f"{node}:8080 answers")
        bodies = [r["body"] for r in results]
        assert all(f"front: {front['ID'][:12]}" in b and f"backend: back {vip}" in b
                   for b in bodies), bodies
        seen = {line.split(": ", 1)[1] for b in bodies for line in b.splitlines()
                if line.startswith("Hostname: ")}
        assert seen == hostnames, (node, bodies)
    # the other network: no name, no VIP, no task address
    for name in ("back", "st_back", "tasks.back"):
        assert _answer(_in(stack, other, "nslookup", name)) == [], name
    for target in (vip, *(_addr(t) for t in backs)):
        out = _in(stack, other, "sh", "-c", GET, target)
        assert "Hostname:" not in out, (target, out)
    # only on an --internal network: no route out, no published traffic (its node's 8080,
    # which answers the others)
    def node_of(task: dict[str, Any]) -> str:
        return NODES[int(host_of(stack, task["NodeID"])[1:]) - 1]

    assert "front:" in _in(stack, early, "sh", "-c", GET.replace("80", "8080"), node_of(early))
    assert "front:" not in _in(stack, other, "sh", "-c", GET.replace("80", "8080"),
                               node_of(other))


def test_tasks_back_follows_scale_and_rollout_with_zero_failed_requests(stack: Lab) -> None:
    [front] = _up(stack, "st_front", 1)
    _up(stack, "st_back", 3)
    [vip] = [v["Addr"].split("/")[0] for v in _service(stack, "st_back")["Endpoint"]["VirtualIPs"]]
    outcome: dict[str, str] = {}

    def load() -> None:
        try:
            outcome["out"] = _in(stack, front, "sh", "-c", LOAD, vip, timeout=600)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = repr(exc)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    began = time.monotonic()
    try:
        for replicas in (6, 2):
            print(time.strftime("%T"), "scale", replicas, flush=True)
            _docker(stack, "service", "scale", "-d", f"st_back={replicas}")
            _tasks_back_is(stack, front, _up(stack, "st_back", replicas))
        old = {t["ID"] for t in _running(stack, "st_back")}
        print(time.strftime("%T"), "update", flush=True)
        _docker(stack, "service", "update", "-d", "--env-add", "ROLLED=1", "st_back")
        rolled = until(lambda: (r := _running(stack, "st_back")) and len(r) == 2
                       and not {t["ID"] for t in r} & old and r, 180, "back rolled")
        _tasks_back_is(stack, front, rolled)
    finally:
        _in(stack, front, "touch", "/tmp/stop")
        loader.join(60)
    assert not loader.is_alive(), "the load loop did not stop"
    counts = dict(kv.split("=") for kv in outcome.get("out", "").split() if "=" in kv)
    print(f"load: {counts} over {time.monotonic() - began:.0f} s")
    assert counts, outcome
    assert int(counts["ok"]) > 50 and int(counts["bad"]) == 0, outcome


def test_stack_rm_removes_its_networks(stack: Lab, tmp_path: Path) -> None:
    _docker(stack, "stack", "rm", "st")
    until(lambda: not any(n["Name"].startswith("st_")
                          for n in stack.client("h1").get("/networks")), 60,
          "the stack's networks removed")
