"""/images and /distribution: this node's images (never forwarded: images are per node).

Pull answers in dockerd's JSON progress lines; a failure before any line is a plain error
response (as dockerd does when nothing was flushed yet), so the CLI prints it as docker."""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from shoal.errors import InvalidArgument, NotFound, NotSupported
from shoal.httpapi.common import (
    check_filter_keys,
    daemon_of,
    json_response,
    label_matches,
    parse_filters,
    query_bool,
    route,
)
from shoal.images import (
    ImagePullError,
    ImageRecord,
    ImageStore,
    RegistryAuth,
    decode_registry_auth,
    distribution,
    parse_reference,
)
from shoal.images.login import login

__all__ = ["add_routes", "image_inspect", "image_summary"]


def _store(request: web.Request) -> ImageStore:
    store: ImageStore | None = getattr(daemon_of(request), "images", None)
    if store is None:
        raise NotSupported("this node has no image store")
    return store


def _unix(created: str) -> int:
    try:
        return int(datetime.datetime.fromisoformat(created[:19] + "+00:00").timestamp())
    except ValueError:
        return 0


def image_summary(record: ImageRecord) -> dict[str, Any]:
    return {
        "Id": record.id,
        "ParentId": "",
        "RepoTags": record.repo_tags,
        "RepoDigests": record.repo_digests,
        "Created": _unix(record.created),
        "Size": record.size,
        "SharedSize": -1,
        "VirtualSize": record.size,
        "Labels": record.config.labels or {},
        "Containers": -1,
    }


def image_inspect(record: ImageRecord, rootfs: Path) -> dict[str, Any]:
    c = record.config
    config = {
        "Hostname": "", "Domainname": "", "User": c.user, "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False, "ExposedPorts": c.exposed_ports,
        "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": c.env, "Cmd": c.cmd,
        "Image": "", "Volumes": c.volumes, "WorkingDir": c.working_dir,
        "Entrypoint": c.entrypoint, "OnBuild": None, "Labels": c.labels,
    }  # fmt: skip
    if c.stop_signal:
        config["StopSignal"] = c.stop_signal
    if c.healthcheck is not None:
        config["Healthcheck"] = c.healthcheck
    return {
        "Id": record.id, "RepoTags": record.repo_tags, "RepoDigests": record.repo_digests,
        "Parent": "", "Comment": "", "Created": record.created, "DockerVersion": "",
        "Author": record.author, "Config": config, "Architecture": record.architecture,
        "Os": record.os, "Size": record.size, "VirtualSize": record.size,
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": str(rootfs)}},
        "RootFS": {"Type": "layers", "Layers": record.diff_ids},
        "Metadata": {"LastTagTime": record.loaded},
    }  # fmt: skip


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


async def _stream(request: web.Request, lines: list[dict[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for obj in lines:
        await response.write(_line(obj))
    await response.write_eof()
    return response


def _pull_status(message: str) -> int:
    return 404 if "not found" in message or "pull access denied" in message else 500


async def create(request: web.Request) -> web.StreamResponse:
    if request.query.get("fromSrc"):
        raise NotSupported("importing a root filesystem (fromSrc) is not supported by shoal")
    name, tag = request.query.get("fromImage", ""), request.query.get("tag", "")
    if not name:
        raise InvalidArgument("fromImage is required")
    if tag:
        name += f"@{tag}" if tag.startswith("sha256:") else f":{tag}"
    ref = parse_reference(name)
    store = _store(request)
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth"))
    before = store.get(ref.familiar)
    try:
        image = await store.pull(name, auth)
    except ImagePullError as exc:
        return json_response({"message": exc.message}, status=_pull_status(exc.message))
    digest = next((d for d in image.repo_digests if d.startswith(ref.familiar_repository)), "")
    fresh = before is None or before.id != image.id
    status = "Downloaded newer image for" if fresh else "Image is up to date for"
    return await _stream(
        request,
        [
            {"status": f"Pulling from {ref.familiar_repository}", "id": ref.tag or ref.digest},
            {"status": f"Digest: {digest.partition('@')[2]}"},
            {"status": f"Status: {status} {ref.familiar}"},
        ],
    )


async def load(request: web.Request) -> web.StreamResponse:
    store = _store(request)
    fd, name = tempfile.mkstemp(dir=store.root / "tmp", prefix="upload-", suffix=".tar")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.content.iter_chunked(1 << 20):
                f.write(chunk)
        lines = await store.load(path)
    finally:
        path.unlink(missing_ok=True)
    # docker prints the same "Loaded image" lines with and without ?quiet (quiet only hides
    # progress bars, and shoal sends none)
    return await _stream(request, [{"stream": line + "\n"} for line in lines])


def _matches(record: ImageRecord, filters: dict[str, list[str]]) -> bool:
    for expr in filters.get("label", []):
        if not label_matches(record.config.labels, expr):
            return False
    for value in filters.get("dangling", []):
        if (value.lower() == "true") != (not record.repo_tags):
            return False
    refs = filters.get("reference", [])
    return not refs or any(_ref_matches(record, r) for r in refs)


def _ref_matches(record: ImageRecord, pattern: str) -> bool:
    pattern = pattern if ":" in pattern.rpartition("/")[2] else pattern + ":*"
    return any(fnmatch.fnmatchcase(t, pattern) for t in record.repo_tags)


async def list_images(request: web.Request) -> web.Response:
    filters = parse_filters(request)
    check_filter_keys(filters, {"label", "dangling", "reference", "before", "since"})
    records = [i for i in _store(request).index.all() if _matches(i, filters)]
    return json_response([image_summary(r) for r in records])


async def inspect(request: web.Request) -> web.Response:
    store = _store(request)
    record = store.record(request.match_info["name"])
    return json_response(image_inspect(record, store.rootfs_of(record.id)))


async def remove(request: web.Request) -> web.Response:
    store = _store(request)
    return json_response(
        await store.remove(request.match_info["name"], force=query_bool(request, "force"))
    )


async def distribution_inspect(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth"))
    try:
        dist = await distribution(_store(request), name, auth)
    except ImagePullError as exc:
        status = _pull_status(exc.message)
        raise (NotFound(exc.message) if status == 404 else exc) from None
    return json_response(
        {
            "Descriptor": {"mediaType": dist.media_type, "digest": dist.digest, "size": dist.size},
            "Platforms": dist.platforms,
        }
    )


async def auth(request: web.Request) -> web.Response:
    """POST /auth (`docker login`): the credentials checked against the registry."""
    try:
        body = msgspec.json.decode(await request.read(), type=RegistryAuth)
    except msgspec.DecodeError as exc:
        raise InvalidArgument(f"invalid auth configuration: {exc}") from None
    await login(_store(request), body)
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "POST", "/auth", auth)  # Docker files it under System; it is the registry's
    route(router, "POST", "/images/create", create)
    route(router, "POST", "/images/load", load)
    route(router, "GET", "/images/json", list_images)
    route(router, "GET", r"/images/{name:.+}/json", inspect)
    route(router, "DELETE", r"/images/{name:.+}", remove)
    route(router, "GET", r"/distribution/{name:.+}/json", distribution_inspect)
