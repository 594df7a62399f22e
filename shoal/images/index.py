"""The node's image records on disk and the lookups docker does on them (tag, digest, ID).

Each record is one file `<dir>/<hex>.json`, replaced by write + rename; a tag names at most
one image (tagging moves it, as `docker tag`/`pull` do)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import msgspec

from shoal.errors import ShoalError
from shoal.images.models import ImageRecord
from shoal.images.reference import parse_reference

__all__ = ["ImageIndex"]

_ID = re.compile(r"(?:sha256:)?([0-9a-f]{1,64})")


class ImageIndex:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, ImageRecord] = {}
        for path in sorted(directory.glob("*.json")):
            try:
                record = msgspec.json.decode(path.read_bytes(), type=ImageRecord)
            except (OSError, msgspec.DecodeError):
                continue  # a record that never finished writing is not an image
            self._records[record.id] = record

    def all(self) -> list[ImageRecord]:
        return sorted(self._records.values(), key=lambda r: r.loaded, reverse=True)

    def find(self, text: str) -> ImageRecord | None:
        """By `name[:tag]`, `name@digest`, full ID or unique ID prefix (as docker)."""
        by_ref = self._by_reference(text)
        if by_ref is not None:
            return by_ref
        m = _ID.fullmatch(text)
        if m is None or (not text.startswith("sha256:") and len(m.group(1)) < 4):
            return None
        found = [r for r in self._records.values() if r.id[7:].startswith(m.group(1))]
        return found[0] if len(found) == 1 else None

    def _by_reference(self, text: str) -> ImageRecord | None:
        try:
            ref = parse_reference(text)
        except ShoalError:
            return None
        for record in self._records.values():
            if ref.digest and f"{ref.familiar_repository}@{ref.digest}" in record.repo_digests:
                return record
            if not ref.digest and ref.familiar_tagged in record.repo_tags:
                return record
        return None

    def add(self, record: ImageRecord, tags: list[str], digests: list[str]) -> ImageRecord:
        """Store `record` (or keep the one known by its ID) and give it `tags` and `digests`."""
        if record.id not in self._records:
            self._records[record.id] = record
        return self.tag(record.id, tags, digests)

    def tag(self, image_id: str, tags: list[str], digests: list[str]) -> ImageRecord:
        for other in list(self._records.values()):
            if other.id != image_id and set(tags) & set(other.repo_tags):
                other.repo_tags = [t for t in other.repo_tags if t not in tags]
                self._write(other)
        record = self._records[image_id]
        record.repo_tags = [*record.repo_tags, *(t for t in tags if t not in record.repo_tags)]
        record.repo_digests = [
            *record.repo_digests,
            *(d for d in digests if d not in record.repo_digests),
        ]
        self._write(record)
        return record

    def untag(self, image_id: str, tags: list[str]) -> None:
        record = self._records[image_id]
        record.repo_tags = [t for t in record.repo_tags if t not in tags]
        repos = {t.rpartition(":")[0] for t in record.repo_tags}
        record.repo_digests = [d for d in record.repo_digests if d.partition("@")[0] in repos]
        self._write(record)

    def delete(self, image_id: str) -> None:
        del self._records[image_id]
        (self.dir / f"{image_id.removeprefix('sha256:')}.json").unlink(missing_ok=True)

    def _write(self, record: ImageRecord) -> None:
        path = self.dir / f"{record.id.removeprefix('sha256:')}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(record))
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.rename(tmp, path)
