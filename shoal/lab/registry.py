"""Debian's `docker-registry` (distribution) as the lab's registry, and for tests on loopback.

`write_config()` makes its config (filesystem storage under the given dir, optional
htpasswd basic auth or Docker token auth: `TokenAuth`, whose realm shoal.lab.tokenauth
serves), `start()` runs it (inside a network namespace when asked) and waits until `/v2/`
answers; the caller stops it by PID (`stop()`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shoal.lab.layout import REGISTRY, LabLayout
from shoal.lab.procs import LAB_REGISTRY, LAB_TOKEN_REALM, LAB_TOKEN_REGISTRY, host_argv

__all__ = [
    "LAB_REGISTRY",
    "LAB_TOKEN_REGISTRY",
    "REGISTRY_BINARY",
    "TokenAuth",
    "lab_token_dir",
    "start",
    "start_lab_registry",
    "start_lab_token_registry",
    "stop",
    "write_config",
    "write_htpasswd",
]

REGISTRY_BINARY = "/usr/bin/docker-registry"


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    import bcrypt  # only the auth tests need it

    lines = [
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}"
        for u, p in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class TokenAuth:
    """distribution's `auth: token:` section: clients get a JWT from `realm` for `service`;
    the registry trusts tokens from `issuer` signed by a certificate in `rootcertbundle`."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path

    def yaml(self) -> str:
        return (
            "auth:\n  token:\n"
            f"    realm: {self.realm}\n    service: {self.service}\n"
            f"    issuer: {self.issuer}\n    rootcertbundle: {self.rootcertbundle}\n"
        )


def write_config(
    directory: Path, addr: str, htpasswd: Path | None = None, token: TokenAuth | None = None
) -> Path:
    """`<directory>/config.yml`: listen on `addr`, blobs under `<directory>/data`, with
    htpasswd basic auth or token auth (not both: distribution takes one access controller)."""
    if htpasswd is not None and token is not None:
        raise ValueError("a registry takes one auth method: htpasswd or token")
    directory.mkdir(parents=True, exist_ok=True)
    text = (
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {addr}\n"
    )
    if htpasswd is not None:
        text += f"auth:\n  htpasswd:\n    realm: shoal-registry\n    path: {htpasswd}\n"
    if token is not None:
        text += token.yaml()
    config = directory / "config.yml"
    config.write_text(text)
    return config


def start(
    config: Path,
    addr: str,
    log: Path,
    netns: str | None = None,
    timeout: float = 10.0,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> int:
    """Run the registry, return its PID once `http://addr/v2/` answers (200 or 401).

    `wrap` puts the command where it runs (the lab: a namespace and cgroup), else `netns`."""
    argv = [REGISTRY_BINARY, "serve", str(config)]
    if wrap is not None:
        argv = wrap(argv)
    elif netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"docker-registry exited {proc.returncode}: {log.read_text()[-500:]}"
            )
        if _answers(addr, netns):
            return proc.pid
        time.sleep(0.05)
    stop(proc.pid)
    raise RuntimeError(f"docker-registry did not answer on {addr} within {timeout}s")


def _answers(addr: str, netns: str | None) -> bool:
    if netns:
        probe = [
            "ip",
            "netns",
            "exec",
            netns,
            "busybox",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            f"http://{addr}/v2/",
        ]
        result = subprocess.run(probe, capture_output=True, text=True)
        return result.returncode == 0 or "401" in result.stderr
    try:
        urllib.request.urlopen(f"http://{addr}/v2/", timeout=1).close()
        return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False


def start_lab_registry(layout: LabLayout) -> int:
    """The lab's registry in its own namespace at 198.18.0.3:5000, storage in the data dir."""
    directory = layout.data_dir / REGISTRY
    config = write_config(directory, LAB_REGISTRY)
    return start(
        config,
        LAB_REGISTRY,
        directory / "registry.log",
        netns=layout.netns(REGISTRY),
        wrap=lambda argv: host_argv(layout, REGISTRY, argv),
    )


def lab_token_dir(layout: LabLayout) -> Path:
    """Config, storage and logs (`tokenauth.log`: a line per token issued) of the token-auth
    registry."""
    return layout.data_dir / REGISTRY / "token"


def start_lab_token_registry(
    layout: LabLayout, users: dict[str, str], service: str = "shoal-lab-registry"
) -> list[int]:
    """A token-auth registry on the registry host at 198.18.0.3:5001, its token server (the
    realm, shoal.lab.tokenauth) at :5002 knowing `users`; the PIDs to `stop()`, realm first."""
    directory = lab_token_dir(layout)
    directory.mkdir(parents=True, exist_ok=True)
    bundle = directory / "token-root.pem"
    bundle.unlink(missing_ok=True)
    issuer = "shoal-lab-token-issuer"
    users_file = directory / "users.json"  # passwords in a 0600 file, not on a command line
    users_file.unlink(missing_ok=True)
    with os.fdopen(os.open(users_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        json.dump(users, f)
    argv = [sys.executable, "-m", "shoal.lab.tokenauth", "--listen", LAB_TOKEN_REALM,
            "--issuer", issuer, "--bundle", str(bundle), "--users", str(users_file)]  # fmt: skip
    log = directory / "tokenauth.log"
    with log.open("ab") as out:
        realm = subprocess.Popen(
            host_argv(layout, REGISTRY, argv), stdout=out, stderr=out,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 10
    while not bundle.exists():
        if realm.poll() is not None or time.monotonic() > deadline:
            stop(realm.pid)
            raise RuntimeError(f"the token server did not start: {log.read_text()[-500:]}")
        time.sleep(0.05)
    token = TokenAuth(f"http://{LAB_TOKEN_REALM}/token", service, issuer, bundle)
    try:
        pid = start(
            write_config(directory, LAB_TOKEN_REGISTRY, token=token), LAB_TOKEN_REGISTRY,
            directory / "registry.log", netns=layout.netns(REGISTRY),
            wrap=lambda argv: host_argv(layout, REGISTRY, argv),
        )  # fmt: skip
    except BaseException:
        stop(realm.pid)
        raise
    return [realm.pid, pid]


def stop(pid: int) -> None:
    """Stop the registry by PID (its process group: `ip netns exec` execs it in place)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)
