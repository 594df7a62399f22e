"""The docker CLI debugs a task container on a node (issue 11): `docker ps`, `inspect`,
`logs`, `exec` (pipes, stdin, a pty, exit codes), `stats --no-stream`, `volume ls|inspect|rm`,
and Docker's errors for bad input.

The node's API (shoal's real app) serves a real runc container through the
`TaskContainers` protocol; the client is the real docker CLI on the API's unix socket.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shoal.api.timefmt import from_epoch
from shoal.httpapi.app import make_app
from shoal.httpapi.taskcontainers import CONTAINERS_KEY
from shoal.node.node import Node as ShoalNode
from shoal.node.options import DaemonOptions
from tests.integration.conftest import session_lab_tag
from tests.integration.containers_fixture import (
    MEMORY_LIMIT,
    RuncContainers,
    RuncTask,
    web_view,
)
from tests.integration.labtools import until

pytestmark = pytest.mark.lab

CID = "c0ffee" + "0123456789abcdef" * 3 + "0123456789"  # 64 hex, like Docker's ids
OLD = "dead00" + "0" * 58


class Node:
    """shoal's API app for a node with task containers, on a unix socket, in a thread."""

    def __init__(self, root: Path, containers: RuncContainers) -> None:
        self.socket = root / "docker.sock"
        self.log = root / "log.jsonl"
        self.t0 = 0.0  # the time of the log's first line
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.daemon = ShoalNode(DaemonOptions(data_root=root / "state", hostname="h1"))
        self.app = make_app(self.daemon)
        self.app[CONTAINERS_KEY] = containers
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        self._run(self._start())

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=30)

    async def _start(self) -> None:
        await self.runner.setup()
        await web.UnixSite(self.runner, str(self.socket)).start()

    def close(self) -> None:
        self._run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("containers")
    task = RuncTask(base / "task", CID, f"shoal-{session_lab_tag('c')}-task")
    task.base.mkdir()
    try:
        task.start("web-1")
        until(lambda: task.state().get("status") == "running", 20, "the container runs")
        started = from_epoch(time.time() - 125)
        log, t0 = base / "log.jsonl", time.time() - 100
        log.write_text("".join(
            json.dumps({"time": from_epoch(t0 + i), "stream": s, "log": text})
            + "\n"
            for i, (s, text) in enumerate(
                [("stdout", "ready"), ("stderr", "warming up"), ("stdout", "serving")]
            )
        ))
        finished = replace(
            web_view(task, log, started), id=OLD, name="web.1.oldtask0000000000000000",
            status="exited", exit_code=2, created=from_epoch(time.time() - 400),
            finished_at=from_epoch(time.time() - 300),
            mounts=(),
        )
        containers = RuncContainers({CID: (task, web_view(task, log, started))}, [finished])
        served = Node(base, containers)
        served.log, served.t0 = log, t0
        try:
            yield served
        finally:
            served.close()
    finally:
        task.close()


def docker(
    node: Node, *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": f"unix://{node.socket}", "DOCKER_CONFIG": "/nonexistent"}
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, input=input, env=env, timeout=60,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
    return proc


def fails(node: Node, *args: str) -> str:
    proc = docker(node, *args, check=False)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


# -- docker ps ---------------------------------------------------------------------------


def test_ps_shows_running_task_containers_with_dockers_columns(node: Node) -> None:
    lines = docker(node, "ps").stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"
    ]
    assert len(lines) == 2 and lines[1].startswith(CID[:12] + " ")
    row = re.split(r"\s{2,}", lines[1])
    assert row[1] == "busybox:latest" and row[2].startswith('"sh -c ')
    assert row[3] == "2 minutes ago" and row[4] == "Up 2 minutes"
    assert row[-1] == f"web.1.{CID[:25]}"


def test_ps_all_quiet_no_trunc_and_format(node: Node) -> None:
    assert docker(node, "ps", "-aq").stdout.split() == [CID[:12], OLD[:12]]
    assert docker(node, "ps", "-aq", "--no-trunc").stdout.split() == [CID, OLD]
    out = docker(node, "ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.splitlines()
    assert out == [
        f"web.1.{CID[:25]} Up 2 minutes",
        "web.1.oldtask0000000000000000 Exited (2) 5 minutes ago",
    ]
    label = docker(
        node, "ps", "--format", '{{.Label "com.docker.swarm.service.name"}}'
    ).stdout.strip()
    assert label == "web"


def test_ps_filters(node: Node) -> None:
    def ids(*flt: str) -> list[str]:
        args = [a for f in flt for a in ("--filter", f)]
        return docker(node, "ps", "-aq", "--no-trunc", *args).stdout.split()

    assert ids("status=exited") == [OLD]
    assert ids("status=running") == [CID]
    assert ids("name=oldtask") == [OLD]
    assert ids("label=com.docker.swarm.service.name=web") == [CID, OLD]
    assert ids("label=com.docker.swarm.service.name=db") == []
    assert ids("exited=2") == [OLD]
    assert "invalid filter 'colour'" in fails(node, "ps", "--filter", "colour=red")
    assert "invalid filter 'status=sleepy'" in fails(node, "ps", "--filter", "status=sleepy")


# -- inspect and logs -------------------------------------------------------------------------


def test_inspect_gives_dockers_container_json(node: Node) -> None:
    data = json.loads(docker(node, "inspect", CID[:8]).stdout)[0]
    assert data["Id"] == CID and data["Name"] == f"/web.1.{CID[:25]}"
    state = data["State"]
    assert state["Status"] == "running" and state["Running"] is True and state["Pid"] > 0
    assert Path(f"/proc/{state['Pid']}").exists()  # the container's real process
    assert data["Config"]["Entrypoint"] == ["sh", "-c"] and data["Config"]["Hostname"] == "web-1"
    assert data["Config"]["Labels"]["com.docker.swarm.task.id"] == CID[:25]
    assert data["HostConfig"]["Memory"] == MEMORY_LIMIT and data["HostConfig"]["PidsLimit"] == 64
    assert data["HostConfig"]["CapDrop"] == ["NET_RAW"]
    assert data["NetworkSettings"]["Networks"]["ingress"]["IPAddress"] == "10.0.0.5"
    assert data["Mounts"][0]["Name"] == "webdata"
    by_name = docker(node, "container", "inspect", "--format", "{{.State.ExitCode}}",
                     "web.1.oldtask0000000000000000").stdout.strip()
    assert by_name == "2"


def test_logs_demultiplexes_streams_tail_and_timestamps(node: Node) -> None:
    proc = docker(node, "logs", CID[:12])
    assert proc.stdout.splitlines() == ["ready", "serving"]
    assert proc.stderr.splitlines() == ["warming up"]
    tail = docker(node, "logs", "--tail", "1", "-t", CID[:12])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z serving\n", tail.stdout)
    since = from_epoch(node.t0 + 1.5)  # between "warming up" and "serving"
    assert docker(node, "logs", "--since", since, CID[:12]).stdout.splitlines() == ["serving"]


def test_logs_follow_streams_new_lines(node: Node) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{node.socket}", "DOCKER_CONFIG": "/nonexistent"}
    cli = subprocess.Popen(
        ["docker", "logs", "-f", "--tail", "0", CID[:12]], stdout=subprocess.PIPE, env=env,
        stdin=subprocess.DEVNULL,
    )
    assert cli.stdout is not None
    out = cli.stdout.fileno()

    def follows() -> bool:  # a line appended once the CLI follows comes out at once
        with node.log.open("a") as fh:
            entry = {"time": from_epoch(time.time()), "stream": "stdout", "log": "late line"}
            fh.write(json.dumps(entry) + "\n")
        return b"late line\n" in _read_until(out, b"late line\n", timeout=1.0, must=False)

    try:
        until(follows, 20, "docker logs -f prints a new line")
    finally:
        cli.kill()
        cli.wait()


def test_unknown_container_gets_dockers_errors(node: Node) -> None:
    assert "No such container: nosuch" in fails(node, "logs", "nosuch")
    assert "No such container: nosuch" in fails(node, "exec", "nosuch", "true")
    assert "No such object: nosuch" in fails(node, "inspect", "nosuch")


# -- exec -------------------------------------------------------------------------------


def test_exec_runs_inside_the_container(node: Node) -> None:
    assert docker(node, "exec", CID[:12], "cat", "/etc/hostname").stdout == "web-1\n"
    # pid 1 is the task's own process; the host's files are not there
    assert docker(node, "exec", CID[:12], "cat", "/proc/1/cmdline").stdout.startswith("sleep")
    assert "No such file" in docker(node, "exec", CID[:12], "ls", "/work", check=False).stderr
    env = docker(node, "exec", "-e", "EXTRA=1", "-w", "/tmp", CID[:12], "sh", "-c",
                 "echo $TASK_ENV $EXTRA $(pwd); echo oops >&2")
    assert env.stdout == "from-spec 1 /tmp\n" and env.stderr == "oops\n"


def test_exec_exit_code_and_stdin(node: Node) -> None:
    proc = docker(node, "exec", CID[:12], "sh", "-c", "exit 3", check=False)
    assert proc.returncode == 3
    data = "".join(f"line {i}\n" for i in range(2000))
    piped = docker(node, "exec", "-i", CID[:12], "sh", "-c", "cat; echo done", input=data)
    assert piped.stdout == data + "done\n"


def test_exec_into_a_finished_task_fails_cleanly(node: Node) -> None:
    err = fails(node, "exec", OLD[:12], "true")
    assert f"container {OLD} is not running" in err


def _read_until(fd: int, pattern: bytes, timeout: float = 20.0, must: bool = True) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while pattern not in seen:
        left = deadline - time.monotonic()
        if left <= 0 and not must:
            return seen
        assert left > 0, f"no {pattern!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_exec_it_under_a_pty(node: Node) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{node.socket}", "DOCKER_CONFIG": "/nonexistent"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the docker CLI on a 33x111 terminal
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        os.execvpe("docker", ["docker", "exec", "-it", CID[:12], "sh"], env)
    try:
        _read_until(fd, b"# ")
        os.write(fd, b"tty; echo $((6*7))\r")
        out = _read_until(fd, b"42")
        assert b"/dev/pts/" in out
        os.write(fd, b"stty size\r")
        assert b"33 111" in _read_until(fd, b"33 111")  # the CLI's size reached the exec's pty
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 80, 0, 0))  # resized

        def resized() -> bool:
            os.write(fd, b"stty size\r")
            return b"20 80" in _read_until(fd, b"20 80", timeout=1.0, must=False)

        until(resized, 20, "the resize reaches the exec's pty (POST /exec/{id}/resize)")
        os.write(fd, b"exit 5\r")
        _read_until(fd, b"\xff", timeout=10)  # until the CLI closes the terminal
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 5
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


# -- stats and volumes ------------------------------------------------------------------


def test_stats_no_stream_reads_the_cgroup(node: Node) -> None:
    out = docker(node, "stats", "--no-stream", "--format",
                 "{{.Name}} {{.MemUsage}} {{.PIDs}}", CID[:12]).stdout.strip()
    name, usage, _, limit, pids = out.split()
    assert name == f"web.1.{CID[:25]}" and limit == "32MiB" and int(pids) >= 1
    assert re.fullmatch(r"[\d.]+[KMG]?i?B", usage)


def test_volumes_ls_inspect_and_rm_in_use_refused(node: Node) -> None:
    made = docker(node, "volume", "create", "--label", "tier=db", "webdata").stdout
    assert made.strip() == "webdata"
    docker(node, "volume", "create", "spare")
    lines = docker(node, "volume", "ls").stdout.splitlines()
    assert re.split(r"\s+", lines[0]) == ["DRIVER", "VOLUME", "NAME"]
    assert [re.split(r"\s+", ln) for ln in lines[1:]] == [["local", "spare"], ["local", "webdata"]]
    data = json.loads(docker(node, "volume", "inspect", "webdata").stdout)[0]
    assert data["Labels"] == {"tier": "db"} and data["Driver"] == "local"
    mountpoint = Path(data["Mountpoint"])
    assert mountpoint == node.daemon.root / "volumes" / "webdata" / "_data" and mountpoint.is_dir()
    shoal = subprocess.run(
        [".venv/bin/shoal", "-H", f"unix://{node.socket}", "volume", "ls"],
        capture_output=True, text=True, timeout=60,
    )
    assert shoal.stdout.splitlines() == lines, shoal.stderr  # shoal's CLI: docker's columns
    err = fails(node, "volume", "rm", "webdata")
    assert f"remove webdata: volume is in use - [{CID}]" in err and mountpoint.is_dir()
    assert docker(node, "volume", "rm", "spare").stdout.strip() == "spare"
    assert "get spare: no such volume" in fails(node, "volume", "inspect", "spare")
    assert "invalid characters for a local volume name" in fails(node, "volume", "create", "a/b")
    assert docker(node, "volume", "ls", "-q", "--filter", "label=tier=db").stdout.split() == [
        "webdata"
    ]


# -- last: the task container is killed and removed -----------------------------------------


def test_rm_kill_and_exec_into_the_dead_task(node: Node) -> None:
    err = fails(node, "rm", CID[:12])
    assert "container is running: stop the container before removing or force remove" in err
    assert "Invalid signal: NOPE" in fails(node, "kill", "-s", "NOPE", CID[:12])
    assert docker(node, "kill", CID[:12]).stdout.strip() == CID[:12]
    until(
        lambda: docker(node, "ps", "-q", "--filter", "status=exited", "--no-trunc")
        .stdout.split().count(CID) == 1,
        20, "the killed container shows as exited",
    )
    assert docker(node, "ps", "-q", "--no-trunc").stdout.split() == []
    assert f"container {CID} is not running" in fails(node, "exec", CID[:12], "true")
    assert docker(node, "stop", CID[:12]).returncode == 0  # already stopped: nothing to do
    assert docker(node, "rm", CID[:12]).stdout.strip() == CID[:12]
    assert "No such container" in fails(node, "inspect", "--type", "container", CID[:12])
    assert "container does not exist" in subprocess.run(
        ["runc", "--root", str(node.socket.parent / "task" / "runc"), "state", CID],
        capture_output=True, text=True,
    ).stderr
