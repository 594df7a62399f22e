"""Images for real (issue 11, images plane): the lab's registry at 198.18.0.3:5000, the real
docker CLI and `shoal image` on a lab host, both archive formats, and registry auth with
htpasswd (a docker-registry on loopback, pulled by an ImageStore in-process)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.images import ImagePullError, ImageStore, RegistryAuth
from shoal.lab import Lab, registry
from shoal.lab import images as test_images
from shoal.lab.iproute import list_netns

pytestmark = pytest.mark.lab

REGISTRY = "198.18.0.3:5000"


def run(lab: Lab, *argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = lab.exec("h1", list(argv), capture=True, timeout=120)
    assert (proc.returncode == 0) == ok, f"{argv}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_lab_registry_pull_ls_load_rm(lab1: Lab, tmp_path: Path) -> None:
    assert lab1.layout.netns("registry") in list_netns()
    test_images.push("whoami", f"{REGISTRY}/whoami:1", netns=lab1.layout.netns("client"))
    out = run(lab1, "docker", "pull", f"{REGISTRY}/whoami:1").stdout
    assert f"Status: Downloaded newer image for {REGISTRY}/whoami:1" in out
    again = run(lab1, "docker", "pull", f"{REGISTRY}/whoami:1").stdout
    assert "Image is up to date" in again
    table = run(lab1, "shoal", "image", "ls").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.split()[:2] == [f"{REGISTRY}/whoami", "1"] for line in table[1:])
    inspected = json.loads(run(lab1, "docker", "image", "inspect", f"{REGISTRY}/whoami:1").stdout)[
        0
    ]
    assert inspected["Config"]["Cmd"] == ["httpd", "-f", "-p", "80", "-h", "/www"]
    assert inspected["RepoDigests"][0].startswith(f"{REGISTRY}/whoami@sha256:")
    # the digest the CLI pins `service create` to is the one the pull recorded
    dist = run(lab1, "curl", "-s", "--unix-socket", str(lab1.layout.socket("h1")),
               f"http://x/v1.47/distribution/{REGISTRY}/whoami:1/json").stdout  # fmt: skip
    assert json.loads(dist)["Descriptor"]["digest"] == inspected["RepoDigests"][0].partition("@")[2]
    assert json.loads(dist)["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
    missing = run(lab1, "docker", "pull", f"{REGISTRY}/whoami:nope", ok=False).stderr
    assert f"manifest for {REGISTRY}/whoami:nope not found: manifest unknown" in missing

    docker_tar = test_images.export("busybox", tmp_path / "bb.tar", "docker-archive", "bb:d")
    oci_tar = test_images.export("busybox", tmp_path / "bb-oci.tar", "oci-archive", "bb:o")
    assert (
        "Loaded image: bb:d" in run(lab1, "docker", "image", "load", "-i", str(docker_tar)).stdout
    )
    assert "Loaded image: bb:o" in run(lab1, "docker", "image", "load", "-i", str(oci_tar)).stdout
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(docker_tar.read_bytes()[:300_000])
    before = run(lab1, "docker", "image", "ls", "-q").stdout
    assert "invalid" in run(lab1, "docker", "image", "load", "-i", str(truncated), ok=False).stderr
    assert run(lab1, "docker", "image", "ls", "-q").stdout == before

    removed = run(lab1, "docker", "image", "rm", "bb:d").stdout
    assert "Untagged: bb:d" in removed
    gone = run(lab1, "docker", "image", "inspect", "bb:d", ok=False).stderr
    assert "No such image: bb:d" in gone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[str]:
    addr = f"127.0.0.1:{_free_port()}"
    htpasswd = registry.write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret"})
    config = registry.write_config(tmp_path / "registry", addr, htpasswd)
    pid = registry.start(config, addr, tmp_path / "registry.log")
    try:
        yield addr
    finally:
        registry.stop(pid)


async def test_registry_basic_auth(auth_registry: str, tmp_path: Path) -> None:
    argv = test_images.push_argv("whoami", f"{auth_registry}/private/whoami:1")
    subprocess.run([*argv[:3], "--dest-creds", "alice:s3cret", *argv[3:]], check=True)
    store = ImageStore(tmp_path / "images", insecure_registries=[auth_registry])
    ref = f"{auth_registry}/private/whoami:1"
    with pytest.raises(ImagePullError, match="no basic auth credentials"):
        await store.pull(ref)
    with pytest.raises(ImagePullError, match="unauthorized: authentication required"):
        await store.pull(ref, RegistryAuth(username="alice", password="wrong"))
    assert store.images() == []
    image = await store.pull(ref, RegistryAuth(username="alice", password="s3cret"))
    assert image.repo_tags == (f"{auth_registry}/private/whoami:1",)
    assert (image.rootfs / "www/cgi-bin/index.cgi").exists()
    assert list((tmp_path / "images" / "tmp").iterdir()) == []  # the authfile is gone too
