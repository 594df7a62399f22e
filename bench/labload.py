"""What the lab benchmarks share: tools, one-task services, waiting, and `wrk` from the client.

Every wait has a deadline; nothing here touches a namespace the lab did not make (the client
route of `route_to_tasks` is in the lab's client namespace).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from shoal.lab.lab import Lab

__all__ = [
    "answer_error",
    "apt_install_missing",
    "create_service",
    "median_run",
    "route_to_tasks",
    "running_tasks",
    "syn_retransmits",
    "tune_client",
    "wrk",
]


def apt_install_missing(needs: list[tuple[str, str]]) -> None:
    """`apt-get install -y` the packages of the (binary or absolute path, package) pairs
    whose file is missing; nothing when all are there."""
    def present(need: str) -> bool:
        return Path(need).exists() if "/" in need else shutil.which(need) is not None

    missing = sorted({pkg for need, pkg in needs if not present(need)})
    if missing:
        print(f"installing {' '.join(missing)} (apt-get)", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def running_tasks(lab: Lab, service: str, count: int, timeout: float = 30.0) -> list[Any]:
    """The service's running tasks once there are `count` of them (exits on the deadline)."""
    client = lab.client("h1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = client.get("/tasks", params={"filters": {"service": {service: True}}})
        up = [t for t in tasks if t["Status"]["State"] == "running"]
        if len(up) >= count:
            return up
        time.sleep(0.1)
    raise SystemExit(f"service {service} did not reach {count} running task(s)")


def create_service(
    lab: Lab, name: str, published: int | None, hostname: str | None = None
) -> tuple[str, dict[str, Any]]:
    """A one-replica `shoal whoami` service (port 80, published on `published` if given),
    pinned to the node named `hostname` if given; its ID and its running task."""
    ports = [{"TargetPort": 80, "PublishedPort": published}] if published else []
    template: dict[str, Any] = {
        "ContainerSpec": {
            "Image": "shoal",
            "Labels": {"shoal.runtime": "exec"},  # a host program (exec runtime)
            "Args": ["whoami", "--port", "80"],
        }
    }
    if hostname is not None:
        template["Placement"] = {"Constraints": [f"node.hostname=={hostname}"]}
    sid: str = lab.client("h1").post(
        "/services/create",
        {
            "Name": name,
            "TaskTemplate": template,
            "Mode": {"Replicated": {"Replicas": 1}},
            "EndpointSpec": {"Ports": ports},
        },
    )["ID"]
    return sid, running_tasks(lab, sid, 1)[0]


def route_to_tasks(lab: Lab, subnet: str, via: str) -> None:
    """Give the lab client a route to a node's task subnet (the direct path), in its netns."""
    subprocess.run(
        ["ip", "-n", lab.layout.netns("client"), "route", "replace", subnet, "via", via],
        check=True,
    )


def tune_client(lab: Lab) -> None:
    """Make the lab client a load generator: the whole port range and reuse of its own
    TIME_WAIT ports (timestamps keep that safe). Without it, `wrk` with a new connection per
    request exhausts the 28k default ports per destination within seconds and then stalls in
    connect() and on 1 s SYN retransmits, so each run depended on the ones before it
    (measured: 10.7k, 5.3k, 4.0k req/s for three runs in a row). In the client's own netns."""
    lab.exec(
        "client",
        ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535"],
        check=True,
    )


def syn_retransmits(lab: Lab) -> int:
    """The client's TCPSynRetrans counter: each one is a connection that waited >= 1 s."""
    text = lab.exec("client", ["cat", "/proc/net/netstat"], capture=True, check=True).stdout
    lines = [line.split() for line in text.splitlines() if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True)).get("TCPSynRetrans", 0))


def answer_error(lab: Lab, url: str, timeout: float = 10.0) -> str | None:
    """None once `url` answers 2xx to curl from the client within `timeout` s, else the last
    curl error (stderr), e.g. "Failed to connect ... Couldn't connect to server"."""
    deadline = time.monotonic() + timeout
    while True:
        r = lab.exec(
            "client", ["curl", "-sSf", "-m", "2", "-o", "/dev/null", url], capture=True
        )
        if r.returncode == 0:
            return None
        if time.monotonic() > deadline:
            return r.stderr.strip().removeprefix("curl: ") or f"curl exit status {r.returncode}"
        time.sleep(0.2)


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median req/s (the upper one of an even count)."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def wrk(lab: Lab, url: str, seconds: int, connections: int, close: bool) -> dict[str, float]:
    """req/s, p50/p99 latency (ms) and errors of `wrk` from the lab client against `url`."""
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    out = lab.exec("client", argv, capture=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value = float(m.group(1)) if m else float("nan")
        unit = m.group(2) if m else "ms"
        lat[pct] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = 0.0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += float(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(float(x) for x in sock.groups())
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"], "errors": errors}
