"""The image store with the real skopeo and umoci, offline: archives load all or nothing,
corrupt and truncated ones change nothing, concurrent pulls of one ref run once, `rm`
untags/deletes as docker and refuses an image in use."""

from __future__ import annotations

import asyncio
import tarfile
from pathlib import Path

import pytest

from shoal.errors import Conflict, InvalidArgument, NotFound, ShoalError
from shoal.images import ImageConfig, ImageStore, LocalImage, RegistryAuth
from shoal.images.reference import Reference
from shoal.lab import images as test_images


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("archives")
    return {
        "docker": test_images.export("whoami", d / "docker.tar", "docker-archive"),
        "oci": test_images.export("whoami", d / "oci.tar", "oci-archive", "whoami:oci"),
        "busybox": test_images.export("busybox", d / "busybox.tar", "docker-archive"),
    }


def _empty(store: ImageStore) -> None:
    assert store.images() == []
    assert list((store.root / "rootfs").iterdir()) == []
    assert list((store.root / "images").iterdir()) == []
    assert list((store.root / "tmp").iterdir()) == []


async def test_loads_both_archive_formats(tmp_path: Path, archives: dict[str, Path]) -> None:
    store = ImageStore(tmp_path / "images")
    assert await store.load(archives["docker"]) == ["Loaded image: whoami:latest"]
    assert await store.load(archives["oci"]) == ["Loaded image: whoami:oci"]
    image = store.get("whoami:oci")
    assert image is not None and image.id.startswith("sha256:")
    assert image.config.cmd == ["httpd", "-f", "-p", "80", "-h", "/www"]
    assert image.config.exposed_ports == {"80/tcp": {}} and image.config.stop_signal == "SIGTERM"
    assert (image.rootfs / "bin" / "busybox").is_file()
    assert (image.rootfs / "www/cgi-bin/index.cgi").stat().st_mode & 0o111
    assert "app:x:1000:1000" in (image.rootfs / "etc/passwd").read_text()
    # the same content again: no second rootfs, same ID by tag, ID prefix and full ID
    assert await store.load(archives["oci"]) == ["Loaded image: whoami:oci"]
    assert (
        store.get(image.id[7:19])
        == store.get(image.id)
        == store.get("docker.io/library/whoami:oci")
    )
    assert len(list((store.root / "rootfs").iterdir())) == 2
    # a restarted store knows the same images
    assert {i.id for i in ImageStore(tmp_path / "images").images()} == {
        i.id for i in store.images()
    }


def _corrupt_layer(src: Path, dest: Path) -> Path:
    """A copy of a docker-save tarball with one byte of its biggest member flipped."""
    with tarfile.open(src) as tar:
        biggest = max(tar.getmembers(), key=lambda m: m.size)
        offset = biggest.offset_data + biggest.size // 2
    data = bytearray(src.read_bytes())
    data[offset] ^= 0xFF
    dest.write_bytes(data)
    return dest


async def test_corrupt_and_truncated_archives_import_nothing(
    tmp_path: Path, archives: dict[str, Path]
) -> None:
    store = ImageStore(tmp_path / "images")
    whole = archives["docker"].read_bytes()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(whole[: len(whole) * 2 // 3])
    for bad in (truncated, _corrupt_layer(archives["docker"], tmp_path / "corrupt.tar")):
        with pytest.raises(ShoalError):
            await store.load(bad)
        _empty(store)
    not_tar = tmp_path / "junk.tar"
    not_tar.write_bytes(b"not a tarball" * 100)
    with pytest.raises(InvalidArgument, match="invalid tar archive"):
        await store.load(not_tar)
    _empty(store)


async def test_rm_untags_deletes_and_refuses_in_use(
    tmp_path: Path, archives: dict[str, Path]
) -> None:
    users: dict[str, str] = {}
    store = ImageStore(tmp_path / "images", in_use=users.get)
    await store.load(archives["docker"])
    await store.load(archives["busybox"])
    image = store.get("whoami")
    assert image is not None
    users[image.id] = "c0ffee" * 8
    with pytest.raises(
        Conflict,
        match=r'unable to remove repository reference "whoami" \(must force\) - '
        r"container c0ffeec0ffee is using its referenced image",
    ):
        await store.remove("whoami")
    with pytest.raises(
        Conflict, match=r"\(cannot be forced\) - image is being used by running container"
    ):
        await store.remove(image.id, force=True)
    assert store.get("whoami") == image
    del users[image.id]
    assert await store.remove("whoami") == [{"Untagged": "whoami:latest"}, {"Deleted": image.id}]
    assert not image.rootfs.exists() and store.get(image.id) is None
    with pytest.raises(NotFound, match="No such image: whoami"):
        await store.remove("whoami")


class CountingStore(ImageStore):
    """A store whose registry is a gate the test opens: counts the pulls that reach it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fetches = 0
        self.gate = asyncio.Event()

    async def _pull(self, ref: Reference, auth: RegistryAuth | None) -> LocalImage:
        self.fetches += 1
        await self.gate.wait()
        if ref.tag == "bad":
            raise ShoalError("registry said no")
        return LocalImage(ref.canonical, (), (), self.root, ImageConfig(), 0, "", "amd64", "linux")


async def test_concurrent_pulls_of_one_ref_run_once(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "images")
    pulls = [
        asyncio.ensure_future(store.pull(r))
        for r in ("busybox", "docker.io/library/busybox:latest", "busybox:latest")
    ]
    other = asyncio.ensure_future(store.pull("busybox:1"))
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.gather(*pulls, other)
    assert store.fetches == 2 and results[0] is results[1] is results[2]
    # a failure reaches every waiter, and the next pull tries again
    store.gate.clear()
    bad = [asyncio.ensure_future(store.pull("busybox:bad")) for _ in range(2)]
    await asyncio.sleep(0)
    store.gate.set()
    for outcome in await asyncio.gather(*bad, return_exceptions=True):
        assert isinstance(outcome, ShoalError)
    with pytest.raises(ShoalError):
        await store.pull("busybox:bad")
    assert store.fetches == 4
