"""What the lab tests share: the CLI on a host, waiting on a condition, the swarm's nodes
and running tasks as the API shows them, a background load from the lab client
(shoal.lab.load), and for the single-host kernel tests `NetnsLab` (namespaces, processes,
line-protocol drivers, cleanup)."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.lab import Lab
from shoal.lab.layout import CLIENT
from tests.polling import until

__all__ = [
    "EXEC", "Load", "NetnsLab", "host_of", "nodes", "read_line", "run", "running", "shoal",
    "until",
]

REPO = Path(__file__).resolve().parents[2]

# `service create` flags for a host program as the task (the exec runtime, not an image)
EXEC = ("--container-label", "shoal.runtime=exec")


def shoal(
    lab: Lab, *args: str, host: str = "h1", check: bool = True, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    proc = lab.exec(host, ["shoal", *args], capture=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"shoal {' '.join(args)} on {host}: {proc.returncode}\n{proc.stderr}")
    return proc


def nodes(lab: Lab, host: str = "h1") -> dict[str, dict[str, Any]]:
    return {n["Description"]["Hostname"].removeprefix("shoal-"): n
            for n in lab.client(host).get("/nodes")}


def running(lab: Lab, service: str = "web", host: str = "h1") -> list[dict[str, Any]]:
    tasks = lab.client(host).get("/tasks", params={"filters": {"service": {service: True}}})
    return [t for t in tasks
            if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]


def host_of(lab: Lab, node_id: str) -> str:
    return next(h for h, n in nodes(lab).items() if n["ID"] == node_id)


class Load:
    """`python -m shoal.lab.load` running in the client until `stop()`: its summary.

    `keepalive`: that many long-lived keep-alive connections per target beside the
    new-connection workers (summary["keepalive"])."""

    def __init__(
        self, lab: Lab, proto: str, targets: list[str], *, timeout: float = 3.0,
        concurrency: int = 8, limit: float = 300.0, keepalive: int = 0,
    ) -> None:
        argv = [sys.executable, "-m", "shoal.lab.load", proto, *targets,
                "--timeout", str(timeout), "--concurrency", str(concurrency),
                "--duration", str(limit), "--keepalive", str(keepalive)]
        self.started = time.monotonic()
        self._proc = lab.popen(
            CLIENT, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def stop(self) -> dict[str, Any]:
        try:
            out, _ = self._proc.communicate(input="", timeout=60)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
        summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return summary


def run(*args: str, check: bool = True, ns: str | None = None) -> subprocess.CompletedProcess[str]:
    """`args` (inside network namespace `ns` if given), its output captured."""
    cmd = ("ip", "netns", "exec", ns, *args) if ns else args
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def read_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    """The next line `proc` prints, within `timeout` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output from {proc.args!r} within {timeout}s"
    return proc.stdout.readline()


class NetnsLab:
    """Network namespaces and processes a kernel test makes, all removed by `cleanup`.

    The one lab of the single-host kernel tests (mesh, overlay, exec runtime); each test
    file builds its own topology on it. Processes are tracked by PID and killed by PID;
    namespaces are deleted by the names made here; `on_cleanup` hooks run first (e.g. a
    runtime's tasks). Drivers are line-protocol programs (`shoal.mesh.driver`,
    `shoal.mesh.overlay.driver`): one JSON request per line in, one JSON reply out.
    """

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.drivers: dict[object, subprocess.Popen[str]] = {}
        self.on_cleanup: list[Callable[[], None]] = []

    def netns(self, name: str, lo: bool = True) -> str:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        if lo:
            run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def spawn(self, ns: str, *argv: str, stdin: bool = False) -> subprocess.Popen[str]:
        """`argv` inside `ns`, from the repository's root, its stdout a pipe; tracked."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], cwd=REPO, text=True, stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else None,
        )
        self.procs.append(proc)
        return proc

    def start_driver(self, key: object, ns: str, *argv: str) -> subprocess.Popen[str]:
        self.stop_driver(key)
        self.drivers[key] = self.spawn(ns, sys.executable, *argv, stdin=True)
        return self.drivers[key]

    def stop_driver(self, key: object) -> None:
        """End of input: the driver exits (what it set up in the kernel stays)."""
        proc = self.drivers.pop(key, None)
        if proc is not None and proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=10)

    def request(self, key: object, op: str, **kw: Any) -> dict[str, Any]:
        driver = self.drivers[key]
        assert driver.stdin is not None
        driver.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        driver.stdin.flush()
        reply: dict[str, Any] = json.loads(read_line(driver))
        return reply

    def cleanup(self) -> None:
        for hook in self.on_cleanup:
            hook()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # by PID: `ip netns exec` and `env` exec into the program
            proc.wait(timeout=10)
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)
