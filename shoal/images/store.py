"""ImageStore: the node's images — pull, load, list, look up, remove.

Layout under `root`: `images/<hex>.json` (records), `rootfs/<hex>/` (read-only unpacked
layers), `tmp/` (staging; emptied at start)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from shoal.errors import InvalidArgument, NotFound
from shoal.images.archive import archive_images
from shoal.images.index import ImageIndex
from shoal.images.models import ImagePullError, ImageRecord, LocalImage, RegistryAuth
from shoal.images.reference import Reference, parse_reference
from shoal.images.removal import plan_removal
from shoal.images.staging import LAYOUT_NAME, Staged, stage_layout
from shoal.images.tools import (
    PLATFORM_ARGS,
    ToolError,
    pull_error,
    registry_args,
    run_tool,
    write_authfile,
)

__all__ = ["Distribution", "ImageStore", "InUse", "distribution"]

log = logging.getLogger(__name__)

# image ID -> ID of a container that uses it, or None (the runtime's answer)
InUse = Callable[[str], str | None]


def _never_in_use(image_id: str) -> str | None:
    return None


class ImageStore:
    """One per node. Thread-unsafe; one event loop."""

    def __init__(
        self,
        root: Path,
        insecure_registries: Iterable[str] = (),
        in_use: InUse | None = None,
        allowed_registries: Iterable[str] | None = None,
    ) -> None:
        self.root = root
        self.insecure = frozenset(insecure_registries)
        # None: any registry; else only these hosts are ever contacted (hermetic test runs)
        self.allowed = None if allowed_registries is None else frozenset(allowed_registries)
        self.in_use: InUse = in_use or _never_in_use
        self._tmp = root / "tmp"
        self._rootfs = root / "rootfs"
        shutil.rmtree(self._tmp, ignore_errors=True)  # leftovers of an interrupted import
        for d in (self._tmp, self._rootfs):
            d.mkdir(parents=True, exist_ok=True)
        self.index = ImageIndex(root / "images")
        self._pulls: dict[str, asyncio.Future[LocalImage]] = {}
        self._commit_lock = asyncio.Lock()

    # ---- lookups

    def rootfs_of(self, image_id: str) -> Path:
        return self._rootfs / image_id.removeprefix("sha256:")

    def _local(self, record: ImageRecord) -> LocalImage:
        return LocalImage.of(record, self.rootfs_of(record.id))

    def get(self, ref_or_id: str) -> LocalImage | None:
        record = self.index.find(ref_or_id)
        return None if record is None else self._local(record)

    def record(self, ref_or_id: str) -> ImageRecord:
        """The record of an image, or Docker's `No such image: X`."""
        record = self.index.find(ref_or_id)
        if record is None:
            raise NotFound(f"No such image: {ref_or_id}")
        return record

    def images(self) -> list[LocalImage]:
        return [self._local(r) for r in self.index.all()]

    # ---- pull

    async def pull(self, ref: str, auth: RegistryAuth | None = None) -> LocalImage:
        """Fetch `ref` from its registry (once per ref at a time) and return it, tagged."""
        parsed = parse_reference(ref)
        key = parsed.canonical
        running = self._pulls.get(key)
        if running is None:
            running = asyncio.ensure_future(self._pull(parsed, auth))
            self._pulls[key] = running
            running.add_done_callback(lambda f: self._pull_done(key, f))
        return await asyncio.shield(running)

    def _pull_done(self, key: str, fut: asyncio.Future[LocalImage]) -> None:
        if self._pulls.get(key) is fut:
            del self._pulls[key]
        if not fut.cancelled():
            fut.exception()  # retrieved: the callers that waited raised it

    def check_allowed(self, ref: Reference) -> None:
        if self.allowed is not None and ref.registry not in self.allowed:
            raise ImagePullError(
                f"pull access denied for {ref.familiar_repository}: registry {ref.registry} "
                "is not in this node's allowed registries (SHOAL_ALLOWED_REGISTRIES)"
            )

    async def _pull(self, ref: Reference, auth: RegistryAuth | None) -> LocalImage:
        if ref.digest:
            known = self.index.find(f"{ref.familiar_repository}@{ref.digest}")
            if known is not None:
                return self._local(known)  # content addressed: nothing newer to fetch
        self.check_allowed(ref)
        stage = Path(tempfile.mkdtemp(dir=self._tmp, prefix="pull-"))
        try:
            authfile = write_authfile(stage / "auth.json", ref, auth)
            raw = await self._skopeo(
                ref, auth, authfile, "inspect", "--raw", *self._src(ref, authfile, auth, "")
            )
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            if ref.digest and ref.digest != digest:
                raise ImagePullError(f"manifest verification failed for digest {ref.digest}")
            repo_digest = f"{ref.familiar_repository}@{digest}"
            known = self.index.find(repo_digest)
            if known is None:
                pinned = f"docker://{ref.repository}@{digest}"
                await self._skopeo(
                    ref, auth, authfile, "copy", "--quiet", *PLATFORM_ARGS,
                    *self._src(ref, authfile, auth, "src-"),
                    pinned, f"oci:{stage / 'layout'}:{LAYOUT_NAME}",
                )  # fmt: skip
                staged = await stage_layout(stage, self._has_rootfs)
                tags = [ref.familiar_tagged] if ref.tag and not ref.digest else []
                return (await self._commit([(staged, tags)], [repo_digest]))[0]
            tags = [ref.familiar_tagged] if ref.tag and not ref.digest else []
            async with self._commit_lock:
                record = self.index.tag(known.id, tags, [])
            return self._local(record)
        finally:
            await asyncio.to_thread(shutil.rmtree, stage, True)

    def _src(
        self, ref: Reference, authfile: Path | None, auth: RegistryAuth | None, prefix: str
    ) -> list[str]:
        args = registry_args(ref, self.insecure, authfile, auth, prefix)
        return args + ([f"docker://{ref.canonical}"] if prefix == "" else [])

    async def _skopeo(
        self, ref: Reference, auth: RegistryAuth | None, authfile: Path | None, *args: str
    ) -> bytes:
        try:
            return await run_tool(["skopeo", *args])
        except ToolError as exc:
            log.info("pull of %s failed: %s", ref.familiar, exc.message)
            raise pull_error(ref, exc, authfile is not None) from None

    # ---- load

    async def load(self, archive: Path) -> list[str]:
        """Import every image of a docker-save or OCI archive; all or nothing.

        Returns docker's lines: `Loaded image: NAME:TAG` / `Loaded image ID: sha256:...`."""
        images = await asyncio.to_thread(archive_images, archive)
        stages: list[Path] = []
        try:
            staged: list[tuple[Staged, list[str]]] = []
            for image in images:
                stage = Path(tempfile.mkdtemp(dir=self._tmp, prefix="load-"))
                stages.append(stage)
                dest = f"oci:{stage / 'layout'}:{LAYOUT_NAME}"
                try:
                    await run_tool(["skopeo", "copy", "--quiet", image.source, dest])
                except ToolError as exc:
                    raise InvalidArgument(f"invalid archive: {exc.message}") from None
                staged.append((await stage_layout(stage, self._has_rootfs), list(image.tags)))
            records = await self._commit(staged, [])
        finally:
            for stage in stages:
                await asyncio.to_thread(shutil.rmtree, stage, True)
        lines = []
        for (_, tags), loaded in zip(staged, records, strict=True):
            lines += [f"Loaded image: {t}" for t in tags] or [f"Loaded image ID: {loaded.id}"]
        return lines

    # ---- commit and removal

    def _has_rootfs(self, image_id: str) -> bool:
        return self.rootfs_of(image_id).is_dir()

    async def _commit(
        self, staged: list[tuple[Staged, list[str]]], repo_digests: list[str]
    ) -> list[LocalImage]:
        """Rename the staged root filesystems into place, then write the records."""
        async with self._commit_lock:
            out = []
            for item, tags in staged:
                target = self.rootfs_of(item.record.id)
                if item.rootfs is not None and not target.exists():
                    os.rename(item.rootfs, target)
                record = self.index.add(item.record, tags, repo_digests)
                out.append(self._local(record))
                log.info("image %s stored (%s)", record.id[:19], ", ".join(tags) or "untagged")
            return out

    async def remove(self, ref_or_id: str, force: bool = False) -> list[dict[str, str]]:
        """Docker's `image rm`: untag, and delete once no tag is left; refused while in use."""
        async with self._commit_lock:
            record = self.record(ref_or_id)
            plan = plan_removal(record, ref_or_id, force, self.in_use(record.id))
            items: list[dict[str, str]] = [{"Untagged": t} for t in plan.untag]
            if plan.delete:
                self.index.delete(record.id)
                trash = self._tmp / f"rm-{record.id.removeprefix('sha256:')}"
                if self.rootfs_of(record.id).exists():
                    os.rename(self.rootfs_of(record.id), trash)
                items.append({"Deleted": record.id})
            else:
                self.index.untag(record.id, plan.untag)
        if plan.delete:
            await asyncio.to_thread(shutil.rmtree, trash, True)
        return items


class Distribution(msgspec.Struct):
    """What `GET /distribution/{name}/json` answers: the registry's manifest descriptor."""

    media_type: str
    digest: str
    size: int
    platforms: list[dict[str, str]]


async def distribution(
    store: ImageStore, ref_text: str, auth: RegistryAuth | None = None
) -> Distribution:
    """Resolve `ref_text` at its registry without pulling (the CLI pins services to it)."""
    ref = parse_reference(ref_text)
    store.check_allowed(ref)
    stage = Path(tempfile.mkdtemp(dir=store._tmp, prefix="dist-"))
    try:
        authfile = write_authfile(stage / "auth.json", ref, auth)
        src = store._src(ref, authfile, auth, "")
        raw = await store._skopeo(ref, auth, authfile, "inspect", "--raw", *src)
        manifest = json.loads(raw)
        media_type = str(manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json")
        if "manifests" in manifest:
            platforms = [
                {"architecture": p.get("architecture", ""), "os": p.get("os", "")}
                | ({"variant": p["variant"]} if p.get("variant") else {})
                for p in (m.get("platform") or {} for m in manifest["manifests"])
            ]
        else:
            config = json.loads(
                await store._skopeo(ref, auth, authfile, "inspect", "--config", *src)
            )
            platforms = [
                {"architecture": config.get("architecture", ""), "os": config.get("os", "")}
            ]
    finally:
        await asyncio.to_thread(shutil.rmtree, stage, True)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return Distribution(media_type, digest, len(raw), platforms)
