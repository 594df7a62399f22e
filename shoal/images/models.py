"""The image store's shapes: the contract's ImageConfig/LocalImage/RegistryAuth/ImagePullError,
and the record each image keeps on disk."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from shoal.api.types import HealthConfig
from shoal.errors import InvalidArgument, ShoalError

__all__ = [
    "ImageConfig",
    "ImagePullError",
    "ImageRecord",
    "LocalImage",
    "RegistryAuth",
    "decode_registry_auth",
]


class ImageConfig(msgspec.Struct, rename="pascal", omit_defaults=True):
    """The OCI/Docker image config's `config` object (the part a container runs with)."""

    user: str = ""
    env: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    working_dir: str = ""
    stop_signal: str = ""
    exposed_ports: dict[str, dict[str, Any]] | None = None
    labels: dict[str, str] | None = None
    volumes: dict[str, dict[str, Any]] | None = None
    healthcheck: HealthConfig | None = None


class RegistryAuth(msgspec.Struct, omit_defaults=True):
    """Docker's X-Registry-Auth JSON (base64url in the header)."""

    username: str = ""
    password: str = ""
    serveraddress: str = ""
    identitytoken: str = ""
    registrytoken: str = ""
    email: str = ""
    auth: str = ""  # "user:pass" base64, as in a docker config.json

    def credentials(self) -> tuple[str, str] | None:
        if self.username or self.password:
            return self.username, self.password
        if self.auth:
            user, _, password = base64.b64decode(self.auth).decode().partition(":")
            return user, password
        return None


def decode_registry_auth(header: str | None) -> RegistryAuth | None:
    """The X-Registry-Auth header (base64url JSON, padding optional); empty → None."""
    if not header or header.strip() in ("", "e30=", "e30"):  # "{}"
        return None
    text = header.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        auth = msgspec.json.decode(raw, type=RegistryAuth)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidArgument("invalid X-Registry-Auth header: not base64url JSON") from None
    return auth if auth != RegistryAuth() else None


class ImagePullError(ShoalError):
    """A pull or load that failed; `message` is Docker's wording."""

    status = 500


class ImageRecord(msgspec.Struct, kw_only=True):
    """What the store keeps per image in `<root>/images/<hex>.json`."""

    id: str
    repo_tags: list[str] = msgspec.field(default_factory=list)
    repo_digests: list[str] = msgspec.field(default_factory=list)
    config: ImageConfig = msgspec.field(default_factory=ImageConfig)
    size: int = 0
    created: str = ""
    architecture: str = "amd64"
    os: str = "linux"
    diff_ids: list[str] = msgspec.field(default_factory=list)
    author: str = ""
    loaded: str = ""  # when this node imported it (RFC 3339)


@dataclass(frozen=True)
class LocalImage:
    id: str  # "sha256:<hex of the image config digest>"
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    rootfs: Path  # unpacked layers, read-only lower dir for overlayfs; never written to
    config: ImageConfig
    size: int
    created: str
    architecture: str
    os: str

    @classmethod
    def of(cls, record: ImageRecord, rootfs: Path) -> LocalImage:
        return cls(
            id=record.id,
            repo_tags=tuple(record.repo_tags),
            repo_digests=tuple(record.repo_digests),
            rootfs=rootfs,
            config=record.config,
            size=record.size,
            created=record.created,
            architecture=record.architecture,
            os=record.os,
        )
