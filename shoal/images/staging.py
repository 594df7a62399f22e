"""One import in its staging dir: an OCI layout skopeo wrote, checked blob by blob, then
unpacked by umoci into a root filesystem — all before anything enters the store."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from shoal.images.models import ImageConfig, ImagePullError, ImageRecord
from shoal.images.tools import ToolError, run_tool

__all__ = ["LAYOUT_NAME", "Staged", "stage_layout"]

LAYOUT_NAME = "image"  # the one ref name inside every staging layout


@dataclass
class Staged:
    record: ImageRecord
    rootfs: Path | None  # None when this node already has the image's rootfs


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_blobs(layout: Path) -> None:
    """Every blob's content hashes to its name (a truncated or altered blob is refused)."""
    for blob in (layout / "blobs" / "sha256").iterdir():
        if _sha256_file(blob) != blob.name:
            raise ImagePullError(
                f"digest mismatch: blob sha256:{blob.name} does not match its content"
            )


def _blob(layout: Path, digest: str) -> Any:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or not hexd.isalnum():
        raise ImagePullError(f"unsupported digest {digest!r}")
    return json.loads((layout / "blobs" / "sha256" / hexd).read_bytes())


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _record(config_digest: str, config: dict[str, Any]) -> ImageRecord:
    runtime = config.get("config") or {}
    return ImageRecord(
        id=config_digest,
        config=msgspec.convert(runtime, ImageConfig, strict=False),
        created=str(config.get("created") or "1970-01-01T00:00:00Z"),
        architecture=str(config.get("architecture") or "amd64"),
        os=str(config.get("os") or "linux"),
        diff_ids=list((config.get("rootfs") or {}).get("diff_ids") or []),
        author=str(config.get("author") or ""),
        loaded=datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
    )


async def stage_layout(stage: Path, have_rootfs: Any) -> Staged:
    """Check `stage/layout` and unpack it into `stage/rootfs` unless `have_rootfs(id)`."""
    layout = stage / "layout"
    try:
        await asyncio.to_thread(verify_blobs, layout)
        index = json.loads((layout / "index.json").read_bytes())
        manifest = _blob(layout, index["manifests"][0]["digest"])
        config_digest = manifest["config"]["digest"]
        record = _record(config_digest, _blob(layout, config_digest))
    except (OSError, KeyError, IndexError, TypeError, ValueError, msgspec.ValidationError) as exc:
        raise ImagePullError(f"invalid image: {exc}") from None
    if have_rootfs(record.id):
        return Staged(record, None)
    rootfs = stage / "rootfs"
    try:
        await run_tool(
            ["umoci", "raw", "unpack", "--image", f"{layout}:{LAYOUT_NAME}", str(rootfs)]
        )
    except ToolError as exc:
        raise ImagePullError(f"failed to register layer: {exc.message}") from None
    record.size = await asyncio.to_thread(tree_size, rootfs)
    return Staged(record, rootfs)
