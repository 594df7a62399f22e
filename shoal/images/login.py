"""`docker login` on the daemon's side (POST /auth): check a user's credentials against a
registry with `skopeo login` (basic or token auth, whichever the registry challenges with),
the password on its standard input and the authfile in a staging dir removed afterwards.
The daemon keeps nothing: the docker CLI stores the credentials in its own config.json."""

from __future__ import annotations

import tempfile
from pathlib import Path

from shoal.errors import InvalidArgument, ShoalError
from shoal.images.models import RegistryAuth
from shoal.images.store import ImageStore
from shoal.images.tools import ToolError, run_tool

__all__ = ["HUB_INDEX", "RegistryLoginError", "login", "login_registry"]

HUB_INDEX = "https://index.docker.io/v1/"  # the CLI's serveraddress for Docker Hub
_HUB_HOSTS = ("index.docker.io", "registry-1.docker.io", "docker.io")


class RegistryLoginError(ShoalError):
    """The registry (or its token realm) refused the credentials."""

    status = 401


def login_registry(serveraddress: str) -> str:
    """The registry host a login's `serveraddress` names (scheme and path dropped);
    Docker Hub's index, or an empty address, is `docker.io`."""
    text = (serveraddress.strip() or HUB_INDEX).removeprefix("https://").removeprefix("http://")
    host = text.split("/", 1)[0]
    if not host or any(c.isspace() for c in host) or host.startswith("-"):
        raise InvalidArgument(f"invalid registry address {serveraddress!r}")
    return "docker.io" if host in _HUB_HOSTS else host


async def login(store: ImageStore, auth: RegistryAuth) -> str:
    """Check `auth` against its registry; the registry host, or `RegistryLoginError` in
    dockerd's words (`login attempt to URL/v2/ failed with status: 401 Unauthorized`)."""
    host = login_registry(auth.serveraddress)
    creds = auth.credentials()
    if creds is None or not creds[0]:
        raise InvalidArgument("a username and a password are required to log in")
    if store.allowed is not None and host not in store.allowed:
        raise RegistryLoginError(
            f"registry {host} is not in this node's allowed registries (SHOAL_ALLOWED_REGISTRIES)"
        )
    insecure = host in store.insecure
    with tempfile.TemporaryDirectory(dir=store.root / "tmp", prefix="login-") as stage:
        argv = [
            "skopeo", "login", f"--tls-verify={'false' if insecure else 'true'}",
            "--authfile", str(Path(stage) / "auth.json"),
            "--username", creds[0], "--password-stdin", host,
        ]  # fmt: skip
        try:
            await run_tool(argv, timeout=60, stdin=creds[1].encode())
        except ToolError as exc:
            raise _login_error(host, insecure, exc) from None
    return host


def _login_error(host: str, insecure: bool, exc: ToolError) -> ShoalError:
    text = exc.message
    url = f"{'http' if insecure else 'https'}://{host}/v2/"
    if "invalid username/password" in text or "unauthorized" in text.lower():
        return RegistryLoginError(f"login attempt to {url} failed with status: 401 Unauthorized")
    if "connection refused" in text:
        return ShoalError(f'Get "{url}": dial tcp {host}: connect: connection refused')
    return ShoalError(f'Get "{url}": {text}')
