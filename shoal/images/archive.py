"""What a `docker image load` archive holds: docker-save tarballs and OCI archives.

Reads only the archive's index (manifest.json or index.json) to name the images inside and
their tags; skopeo reads the content. A file that is not a readable tar is refused here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.errors import InvalidArgument
from shoal.images.reference import parse_reference

if TYPE_CHECKING:
    import tarfile  # imported by `archive_images` (an image load), not by every daemon

__all__ = ["ArchiveImage", "archive_images"]

_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


@dataclass(frozen=True)
class ArchiveImage:
    source: str  # a skopeo source: docker-archive:PATH:@N or oci-archive:PATH[:NAME]
    tags: tuple[str, ...]  # familiar "name:tag"


def _member_json(tar: tarfile.TarFile, name: str) -> Any:
    member = tar.extractfile(name)
    if member is None:
        raise InvalidArgument(f"invalid archive: {name} is not a file")
    return json.loads(member.read())


def _familiar_tags(names: list[str]) -> tuple[str, ...]:
    out = []
    for name in names:
        ref = parse_reference(name)
        if ref.tag:
            out.append(ref.familiar_tagged)
    return tuple(out)


def _docker_images(path: Path, manifest: Any) -> list[ArchiveImage]:
    if not isinstance(manifest, list) or not manifest:
        raise InvalidArgument("invalid archive: manifest.json holds no image")
    return [
        ArchiveImage(f"docker-archive:{path}:@{i}", _familiar_tags(entry.get("RepoTags") or []))
        for i, entry in enumerate(manifest)
    ]


def _oci_images(path: Path, index: Any) -> list[ArchiveImage]:
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not manifests:
        raise InvalidArgument("invalid archive: index.json holds no image")
    out = []
    for desc in manifests:
        notes = desc.get("annotations") or {}
        name = next((notes[k] for k in _NAME_ANNOTATIONS if k in notes), "")
        if len(manifests) > 1 and (not notes.get(_NAME_ANNOTATIONS[1]) or ":" in name):
            raise InvalidArgument(
                "an OCI archive of several images needs a plain ref.name per image"
            )
        source = f"oci-archive:{path}" if len(manifests) == 1 else f"oci-archive:{path}:{name}"
        named = ":" in name or "/" in name  # a bare ref.name ("latest") names no repository
        out.append(ArchiveImage(source, _familiar_tags([name]) if named else ()))
    return out


def archive_images(path: Path) -> list[ArchiveImage]:
    """The images in a docker-save or OCI archive; InvalidArgument when it is neither."""
    import tarfile

    try:
        with tarfile.open(path, "r:*") as tar:
            names = set(tar.getnames())
            if "manifest.json" in names:
                return _docker_images(path, _member_json(tar, "manifest.json"))
            if "index.json" in names and "oci-layout" in names:
                return _oci_images(path, _member_json(tar, "index.json"))
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise InvalidArgument(f"invalid tar archive: {exc}") from None
    raise InvalidArgument(
        "invalid archive: neither a docker save tarball (manifest.json) nor an OCI archive"
    )
