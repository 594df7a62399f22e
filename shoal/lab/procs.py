"""Processes on lab hosts: the daemon launcher, `lab exec` command lines and environment.

A process "runs on" host hK when it is in hK's network namespace and in hK's cgroup. It
enters the namespace with `nsenter --net` rather than `ip netns exec`: the latter also makes a
private mount namespace with /sys remounted, which hides the cgroup2 file system from the
daemon (its task runtime makes cgroups) and keeps its netns pins from propagating. Only the
network namespace is the host's; the file system is the machine's, which is what a lab wants
(the daemon runs the same installed shoal).

Inside a host, `shoal` resolves to this virtualenv's entry point (its bin directory is put
first in PATH) and both SHOAL_HOST and DOCKER_HOST name the host's own daemon socket; on the
client, which has no daemon, they name h1's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from shoal.client import Client
from shoal.errors import ShoalError, Unavailable
from shoal.lab.cgroups import join_argv
from shoal.lab.iproute import NETNS_DIR
from shoal.lab.layout import REGISTRY_ADDRESS, LabLayout

LAB_REGISTRY = f"{REGISTRY_ADDRESS}:5000"
# a second registry on the registry host, with token auth, started by the tests that want it
LAB_TOKEN_REGISTRY = f"{REGISTRY_ADDRESS}:5001"
LAB_TOKEN_REALM = f"{REGISTRY_ADDRESS}:5002"

__all__ = [
    "LAB_TOKEN_REALM",
    "LAB_TOKEN_REGISTRY",
    "DaemonArgv",
    "daemon_alive",
    "host_argv",
    "host_env",
    "launch_daemon",
    "log_tail",
    "shoal_daemon_argv",
    "wait_ready",
]

DaemonArgv = Callable[[LabLayout, str], list[str]]


def shoal_daemon_argv(layout: LabLayout, host: str) -> list[str]:
    """The real daemon of `hK`: its own data root, socket and hostname `shoal-hK`."""
    return [
        sys.executable,
        "-m",
        "shoal",
        "daemon",
        "--data-root",
        str(layout.data_root(host)),
        "--host",
        layout.api_url(host),
        "--hostname",
        f"shoal-{host}",
        "--insecure-registry",
        LAB_REGISTRY,  # the lab's docker-registry speaks plain HTTP
        "--insecure-registry",
        LAB_TOKEN_REGISTRY,  # and so does its token-auth twin
        "--metrics-addr",
        "127.0.0.1:9323",  # metrics and dashboard, on the host namespace's own loopback
    ]


def host_env(layout: LabLayout, host: str, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    url = layout.api_url(host)
    env["SHOAL_HOST"] = url
    env["DOCKER_HOST"] = url
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return env


def host_argv(layout: LabLayout, host: str, argv: list[str]) -> list[str]:
    """`argv` run in `host`'s cgroup and network namespace."""
    netns = NETNS_DIR / layout.netns(host)
    return join_argv(layout.cgroup(host), ["nsenter", f"--net={netns}", "--", *argv])


def launch_daemon(layout: LabLayout, host: str, daemon_argv: DaemonArgv) -> subprocess.Popen[bytes]:
    """Start `host`'s daemon in the background, its output appended to its daemon.log."""
    layout.data_root(host).mkdir(parents=True, exist_ok=True)
    env = host_env(layout, host)
    env["PYTHONUNBUFFERED"] = "1"
    env["SHOAL_DNS_FORWARDERS"] = "none"  # the embedded DNS never asks outside the lab
    argv = host_argv(layout, host, daemon_argv(layout, host))
    with open(layout.daemon_log(host), "ab") as log:
        log.write(f"--- lab: starting {' '.join(argv[4:])}\n".encode())
        log.flush()
        # Its own session: a Ctrl-C at the terminal of `lab up` must not reach the daemons.
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def daemon_alive(layout: LabLayout, host: str, pid: int | None) -> bool:
    """True if `pid` still runs in `host`'s cgroup (immune to pid reuse elsewhere)."""
    if pid is None:
        return False
    try:
        text = (layout.cgroup(host) / "cgroup.procs").read_text()
    except OSError:
        return False
    return str(pid) in text.split()


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} is missing)"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    layout: LabLayout, host: str, alive: Callable[[], bool], timeout: float = 30.0
) -> None:
    """Wait until `host`'s daemon answers GET /_ping; Unavailable (with its log) if not."""
    deadline = time.monotonic() + timeout
    with Client(layout.api_url(host), timeout=2.0) as client:
        while True:
            try:
                client.get("/_ping")
                return
            except ShoalError:
                pass
            problem = None
            if not alive():
                problem = "its daemon exited"
            elif time.monotonic() > deadline:
                problem = f"its daemon did not answer /_ping within {timeout:.0f}s"
            if problem is not None:
                log = layout.daemon_log(host)
                raise Unavailable(
                    f"lab host {host}: {problem}. Last lines of {log}:\n{log_tail(log)}"
                )
            time.sleep(0.05)
