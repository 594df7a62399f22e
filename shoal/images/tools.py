"""skopeo and umoci as subprocesses, and skopeo's failures in Docker's words.

Only argv building and message mapping live here; the store decides what to run when."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from pathlib import Path

from shoal import timeouts
from shoal.images.models import ImagePullError, RegistryAuth
from shoal.images.reference import DEFAULT_REGISTRY, Reference

__all__ = [
    "PLATFORM_ARGS",
    "ToolError",
    "pull_error",
    "registry_args",
    "run_tool",
    "write_authfile",
]

# manifest lists resolve to what this node runs
PLATFORM_ARGS = ["--override-os", "linux", "--override-arch", "amd64"]
_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


class ToolError(Exception):
    def __init__(self, argv: list[str], code: int, stderr: str) -> None:
        super().__init__(f"{argv[0]} exited {code}: {stderr}")
        self.code = code
        self.stderr = stderr

    @property
    def message(self) -> str:
        """The tool's own message, without logrus' `time=... level=fatal msg=` framing."""
        found = _MSG.findall(self.stderr)
        text = found[-1].encode().decode("unicode_escape") if found else self.stderr
        lines = text.strip().splitlines()
        if not lines:
            return f"exit status {self.code}"
        if len(lines) > 1 and lines[0].endswith("errors:"):
            # a registry's error list (e.g. denied + unauthorized): dockerd reports the first
            return f"{lines[0]} {lines[1]}"
        return lines[-1]


async def run_tool(argv: list[str], timeout: float = 600.0, stdin: bytes | None = None) -> bytes:
    """Run a tool, return its stdout bytes; `ToolError` on failure (killed after `timeout`).

    `stdin` is written to its standard input (a password: never on a command line)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C"},
    )
    try:
        out, err = await timeouts.wait_for(proc.communicate(stdin), timeout)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise ToolError(argv, proc.returncode or 1, err.decode(errors="replace"))
    return out


def registry_host(ref: Reference) -> str:
    return "registry-1.docker.io" if ref.registry == DEFAULT_REGISTRY else ref.registry


def write_authfile(path: Path, ref: Reference, auth: RegistryAuth | None) -> Path | None:
    """A containers-auth.json (mode 0600) holding `auth` for the ref's registry, or None."""
    if auth is None:
        return None
    creds = auth.credentials()
    entry: dict[str, str] = {}
    if creds is not None:
        entry["auth"] = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    if auth.identitytoken:
        entry["identitytoken"] = auth.identitytoken
    if not entry:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": {ref.registry: entry, registry_host(ref): entry}}, f)
    return path


def registry_args(
    ref: Reference,
    insecure: frozenset[str],
    authfile: Path | None,
    auth: RegistryAuth | None,
    prefix: str,
) -> list[str]:
    """skopeo flags for reading from the ref's registry (`prefix` is "src-" for copy)."""
    args: list[str] = []
    if ref.registry in insecure:
        args.append(f"--{prefix}tls-verify=false")
    if authfile is not None:
        args += [f"--{prefix}authfile", str(authfile)]
    elif prefix:
        args.append(f"--{prefix}no-creds")
    if auth is not None and auth.registrytoken:
        args += [f"--{prefix}registry-token", auth.registrytoken]
    return args


def pull_error(ref: Reference, exc: ToolError, with_creds: bool) -> ImagePullError:
    """skopeo's failure for `ref` as dockerd words it."""
    text = exc.message
    low = text.lower()
    host = registry_host(ref)
    scheme = "https"
    manifest_url = f'"{scheme}://{host}/v2/{ref.path}/manifests/{ref.tag or ref.digest}"'
    if "manifest unknown" in low:
        return ImagePullError(
            f"manifest for {ref.familiar} not found: manifest unknown: manifest unknown"
        )
    if "name unknown" in low or "denied" in low or "repository name not known" in low:
        return ImagePullError(
            f"pull access denied for {ref.familiar_repository}, repository does not exist "
            "or may require 'docker login': denied: requested access to the resource is denied"
        )
    if "unauthorized" in low or "authentication required" in low or "401" in low:
        why = "unauthorized: authentication required" if with_creds else "no basic auth credentials"
        return ImagePullError(f"Head {manifest_url}: {why}")
    if "http response to https client" in low:
        return ImagePullError(
            f'Get "https://{host}/v2/": http: server gave HTTP response to HTTPS client'
        )
    if "connection refused" in low:
        return ImagePullError(
            f'Get "https://{host}/v2/": dial tcp {host}: connect: connection refused'
        )
    if "no such host" in low or "network is unreachable" in low or "i/o timeout" in low:
        return ImagePullError(f'Get "https://{host}/v2/": dial tcp: lookup {host}: {text}')
    if "digest" in low and ("mismatch" in low or "did not match" in low):
        return ImagePullError(f"failed to register layer: {text}")
    return ImagePullError(f"error pulling image {ref.familiar}: {text}")
