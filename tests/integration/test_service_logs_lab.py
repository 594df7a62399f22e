"""`docker service logs` shows every node's tasks (session 12), as the user walkthrough ran
it: a 4-node lab (h1 the leader, h2 and h3 follower managers, h4 a worker), a global busybox
service; asked on the leader or a follower, the docker CLI and `shoal service logs` print
the line of each of the four tasks, `--tail 1` one line per task, `-f --tail 0` lines the
tasks write after it started, from every node; asked on the worker, docker's "not a swarm
manager" error as before."""

from __future__ import annotations

import re
import select
import signal
import time
from collections.abc import Iterator

import pytest

from shoal.lab import Lab
from shoal.lab import images as test_images
from tests.integration.labtools import host_of, running, shoal, until

pytestmark = pytest.mark.lab

TALK = ("echo hello from $(hostname); i=0; "
        "while sleep 1; do i=$((i+1)); echo tick $i from $(hostname); done")
HOSTS = ("h1", "h2", "h3", "h4")


@pytest.fixture(scope="module")
def lab(lab_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(lab_tag + "l")
    lab.down()
    try:
        lab.up(nodes=4, managers=3)
        archive = test_images.export("busybox", tmp_path_factory.mktemp("img") / "bb.tar",
                                     "docker-archive", "bb:logs")  # fmt: skip
        for host in HOSTS:
            proc = lab.exec(host, ["docker", "image", "load", "-i", str(archive)], capture=True)
            assert "Loaded image: bb:logs" in proc.stdout, proc.stderr
        proc = lab.exec("h1", ["docker", "service", "create", "-d", "--name", "talk", "--mode",
                               "global", "bb:logs", "sh", "-c", TALK], capture=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        until(lambda: len(running(lab, "talk")) == 4, 120, "a talk task on each node")
        yield lab
    finally:
        lab.down(purge=True)


def _docker(lab: Lab, *args: str, host: str = "h1") -> tuple[int, str, str]:
    proc = lab.exec(host, ["docker", *args], capture=True, timeout=60)
    return proc.returncode, str(proc.stdout), str(proc.stderr)


def _node_of(line: str) -> str:
    """The node of a CLI log line `talk.<node>.<task>@shoal-hN    | text`."""
    found = re.match(r"^talk\.\w+\.\w+@shoal-(h\d)\s+\| ", line)
    return found.group(1) if found else ""


@pytest.mark.parametrize("asked", ["h1", "h2"])  # the leader, a follower
def test_docker_and_shoal_service_logs_show_every_nodes_task(lab: Lab, asked: str) -> None:
    def every_node(out: str) -> bool:
        return {_node_of(ln) for ln in out.splitlines() if "hello from" in ln} == set(HOSTS)

    code, out, err = _docker(lab, "service", "logs", "talk", host=asked)
    assert code == 0 and every_node(out), (out, err)
    out = shoal(lab, "service", "logs", "talk", host=asked).stdout
    assert every_node(out), out
    code, out, err = _docker(lab, "service", "logs", "--tail", "1", "talk", host=asked)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4 and {_node_of(ln) for ln in lines} == set(HOSTS), out
    out = shoal(lab, "service", "logs", "--tail", "1", "--no-task-ids", "talk",
                host=asked).stdout  # fmt: skip
    assert len(out.splitlines()) == 4, out
    # one task on a worker, by its ID, with docker's --raw
    task = next(t for t in running(lab, "talk") if host_of(lab, t["NodeID"]) == "h4")
    code, out, err = _docker(lab, "service", "logs", "--raw", task["ID"], host=asked)
    assert code == 0 and out.startswith("hello from "), (out, err)


@pytest.mark.parametrize("asked", ["h1", "h3"])
def test_follow_sees_lines_written_after_it_started_on_every_node(lab: Lab, asked: str) -> None:
    proc = lab.popen(asked, ["docker", "service", "logs", "-f", "--tail", "0", "talk"],
                     stdout=-1, stderr=-1, text=True)  # fmt: skip
    seen: set[str] = set()
    buffered = ""
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while seen != set(HOSTS) and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = proc.stdout.readline()
                if not chunk:
                    break
                buffered += chunk
                if "tick" in chunk:
                    seen.add(_node_of(chunk))
        assert "hello from" not in buffered  # --tail 0: nothing from before
        assert seen == set(HOSTS), buffered
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_asked_on_a_worker_docker_says_it_is_not_a_manager(lab: Lab) -> None:
    code, _, err = _docker(lab, "service", "logs", "talk", host="h4")
    assert code != 0 and "This node is not a swarm manager" in err, err
