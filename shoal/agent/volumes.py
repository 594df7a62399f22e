"""A node's local named volumes: `<root>/<name>/_data` plus `<root>/<name>/volume.json`
(labels, options, creation time). Names follow Docker's rule for local volumes.

The store only keeps directories; whether a volume is in use is the caller's knowledge (the
task containers' mounts), passed to `remove`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from shoal.errors import Conflict, InvalidArgument, NotFound

__all__ = ["LocalVolume", "VolumeStore"]

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_META = "volume.json"


class _Meta(msgspec.Struct):
    created_at: str
    labels: dict[str, str] = {}
    options: dict[str, str] = {}


@dataclass(frozen=True)
class LocalVolume:
    name: str
    mountpoint: Path
    created_at: str
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path"
        )


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _load(self, name: str) -> LocalVolume | None:
        base = self.root / name
        try:
            meta = msgspec.json.decode((base / _META).read_bytes(), type=_Meta)
        except (OSError, msgspec.DecodeError):
            return None
        return LocalVolume(name, base / "_data", meta.created_at, meta.labels, meta.options)

    def get(self, name: str) -> LocalVolume:
        found = self._load(name) if _NAME.match(name) else None
        if found is None:
            raise NotFound(f"get {name}: no such volume")
        return found

    def list(self) -> list[LocalVolume]:
        if not self.root.is_dir():
            return []
        found = (self._load(p.name) for p in sorted(self.root.iterdir()))
        return [v for v in found if v is not None]

    def create(
        self, name: str, created_at: str, labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
    ) -> LocalVolume:
        """The volume `name`, made if new (an existing one is returned unchanged)."""
        check_name(name)
        existing = self._load(name)
        if existing is not None:
            return existing
        base = self.root / name
        (base / "_data").mkdir(parents=True, exist_ok=True)
        meta = _Meta(created_at, dict(labels or {}), dict(options or {}))
        tmp = base / (_META + ".tmp")
        tmp.write_bytes(msgspec.json.encode(meta))
        tmp.replace(base / _META)
        return LocalVolume(name, base / "_data", created_at, meta.labels, meta.options)

    def remove(self, name: str, users: Sequence[str]) -> None:
        """Delete the volume and its data; refused while containers (`users`) mount it."""
        volume = self.get(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        shutil.rmtree(volume.mountpoint.parent)
