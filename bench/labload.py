"""What the lab benchmarks share: waiting for running tasks, and `wrk` from the lab client."""

from __future__ import annotations

import re
import time
from typing import Any

from shoal.lab.lab import Lab

__all__ = ["running_tasks", "wrk"]


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
