"""Requests from the lab's client namespace, for the demo and the integration tests.

The client (198.18.0.2) is the outside world of the lab: what it gets back is what a user
of the cluster gets. Every request has a timeout; targets are lab addresses given by callers.
`http_get` uses curl; `probe_http` and `udp_ask` run shoal.lab.probe in the client namespace.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from shoal.lab.lab import Lab
from shoal.lab.layout import CLIENT

__all__ = ["AskFailed", "http_get", "probe", "udp_ask"]


class AskFailed(AssertionError):
    """A request from the client got no (good) answer. An AssertionError: tests read it so."""


def http_get(lab: Lab, host_addr: str, port: int, path: str = "/", timeout: float = 3.0) -> str:
    """GET http://host_addr:port/path from the client namespace; the body (AskFailed if not 2xx)."""
    url = f"http://{host_addr}:{port}{path}"
    argv = ["curl", "-sS", "--fail", "--max-time", str(timeout), url]
    proc = lab.exec(CLIENT, argv, capture=True, timeout=timeout + 10)
    if proc.returncode != 0:
        raise AskFailed(f"GET {url} from client: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def probe(
    lab: Lab,
    proto: str,
    targets: list[str],
    count: int = 1,
    timeout: float = 2.0,
    payload: str = "hello",
) -> list[dict[str, Any]]:
    """`count` requests ("http" or "udp") to each ADDR:PORT target, one connection each.

    One result per request, in order: {"target", "ok", "status" (http), "body" | "error"}.
    """
    argv = [sys.executable, "-m", "shoal.lab.probe", proto, *targets]
    argv += ["--count", str(count), "--timeout", str(timeout), "--payload", payload]
    limit = 30 + count * len(targets) * timeout
    proc = lab.exec(CLIENT, argv, capture=True, timeout=limit)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if len(results) != count * len(targets):
        raise AskFailed(f"probe from client failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return results


def udp_ask(
    lab: Lab, host_addr: str, port: int, payload: str = "hello", timeout: float = 2.0
) -> str:
    """One datagram to host_addr:port from the client namespace; the answer (AskFailed if none)."""
    result = probe(lab, "udp", [f"{host_addr}:{port}"], 1, timeout, payload)[0]
    if not result["ok"]:
        raise AskFailed(f"UDP {host_addr}:{port} from client: {result.get('error')}")
    return str(result["body"])
