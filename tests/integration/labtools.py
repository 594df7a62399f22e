"""What the multi-node lab tests share: the CLI on a host, waiting on a condition, the
swarm's nodes and running tasks as the API shows them, and a background load from the
lab client (shoal.lab.load)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from shoal.lab import Lab
from shoal.lab.layout import CLIENT
from tests.polling import until

__all__ = ["EXEC", "Load", "host_of", "nodes", "running", "shoal", "until"]

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
