"""`--with-registry-auth`: the X-Registry-Auth header the docker CLI sends, from the same
place (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, its `auths` entry for
the image's registry; Docker Hub's key is `https://index.docker.io/v1/`).

The value is base64url of docker's AuthConfig JSON; with no credentials for the registry
it is `{}` encoded, as docker's. Credential helpers (`credsStore`) are not consulted.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["encode_auth", "registry_auth_header", "registry_of"]

HUB = "https://index.docker.io/v1/"


def registry_of(image: str) -> str:
    """The registry host of an image reference, or Docker Hub's index key."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return HUB


def encode_auth(auth: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(dict(auth)).encode()).decode()


def _auth_entry(config: Mapping[str, Any], registry: str) -> dict[str, Any]:
    auths = config.get("auths") or {}
    entry = auths.get(registry) or auths.get(f"https://{registry}") or {}
    out: dict[str, Any] = {}
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        out = {"username": user, "password": password}
    if entry.get("identitytoken"):
        out["identitytoken"] = entry["identitytoken"]
    if out:
        out["serveraddress"] = registry
    return out


def registry_auth_header(image: str, environ: Mapping[str, str] = os.environ) -> str:
    base = environ.get("DOCKER_CONFIG") or str(Path(environ.get("HOME", "~")) / ".docker")
    path = Path(base).expanduser() / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        config = {}
    return encode_auth(_auth_entry(config if isinstance(config, dict) else {}, registry_of(image)))
