"""Docker image references: parse, normalise (docker.io/library/, :latest), familiar form.

Pure: no I/O. Follows distribution/reference's grammar (name components lowercase, a
registry host when the first component has a '.' or ':' or is 'localhost')."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shoal.errors import InvalidArgument

__all__ = ["DEFAULT_REGISTRY", "Reference", "parse_reference"]

DEFAULT_REGISTRY = "docker.io"
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?")


@dataclass(frozen=True)
class Reference:
    registry: str  # "docker.io" or "host[:port]"
    path: str  # "library/busybox"
    tag: str  # "" when only a digest was given
    digest: str  # "" or "sha256:..."

    @property
    def repository(self) -> str:
        """Fully qualified repository: `docker.io/library/busybox`."""
        return f"{self.registry}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """What docker shows: `busybox`, `user/app`, `198.18.0.3:5000/app`."""
        if self.registry == DEFAULT_REGISTRY:
            return self.path.removeprefix("library/")
        return self.repository

    @property
    def canonical(self) -> str:
        """`docker.io/library/busybox:latest` or `...@sha256:...` (what skopeo is given)."""
        return self.repository + (f"@{self.digest}" if self.digest else f":{self.tag}")

    @property
    def familiar(self) -> str:
        """`busybox:latest`, or `busybox@sha256:...` for a digest reference."""
        suffix = f"@{self.digest}" if self.digest else f":{self.tag}"
        return self.familiar_repository + suffix

    @property
    def familiar_tagged(self) -> str:
        return f"{self.familiar_repository}:{self.tag}" if self.tag else ""

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.path, self.tag, digest)


def _split_host(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.fullmatch(first):
            raise InvalidArgument("invalid reference format")
        return first, rest
    return DEFAULT_REGISTRY, name


def parse_reference(text: str, default_tag: str = "latest") -> Reference:
    """Parse `[host[:port]/]name[:tag][@digest]`; a bare name gets `default_tag`."""
    if not text or text != text.strip():
        raise InvalidArgument("invalid reference format")
    name, _, digest = text.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise InvalidArgument("invalid reference format")
    tag = ""
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidArgument("invalid reference format")
    registry, path = _split_host(name)
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = "library/" + path
    if path != path.lower():
        raise InvalidArgument(
            f"invalid reference format: repository name ({path}) must be lowercase"
        )
    if not path or not all(_COMPONENT.fullmatch(part) for part in path.split("/")):
        raise InvalidArgument("invalid reference format")
    if not tag and not digest:
        tag = default_tag
    return Reference(registry, path, tag, digest)
