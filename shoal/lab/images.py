"""Offline test images built from Debian's busybox-static with umoci (tests, bench, demo).

`build(name)` makes (or reuses from the cache dir) an OCI layout holding one image;
`export()` writes it as a docker-save tarball or an OCI archive, `push()` copies it to a
registry (the lab's, 198.18.0.3:5000, run from inside a lab namespace). Nothing is fetched
from outside: the only input is /bin/busybox.

Images:
    busybox   /bin/busybox + its applets, /etc/passwd|group (root, nobody, app uid 1000),
              Cmd ["sh"]; `busybox httpd -f -p 80` serves /www
    bulky     busybox + 4 MB of incompressible filler: a ~5 MB pull (bench/image_pull.py)
    whoami    busybox + a CGI: `GET /` answers "Hostname: <container hostname>" and the
              request line; Cmd httpd -f -p 80, ExposedPorts 80/tcp, StopSignal SIGTERM
    whoami-v2 whoami with one more label: the same server under another digest (rollouts)
    front     busybox httpd whose CGI answers each request by calling `$BACKEND` (default
              `back`) by name: resolved through the task's DNS (busybox nslookup: the static
              binary's getaddrinfo cannot resolve) and fetched over TCP with nc; it prints
              "front: <hostname>", the address it resolved, then the backend's body
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = ["BUILD_DIR", "IMAGES", "TestImage", "build", "export", "push"]

BUSYBOX = Path("/bin/busybox")
BUILD_DIR = Path(os.environ.get("SHOAL_IMAGE_BUILD_DIR", "/var/tmp/shoal-images"))
_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
_GROUP = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"
_WHOAMI_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "Hostname: $(hostname)"
echo "IP: $(ip -4 -o addr show 2>/dev/null | awk '$2 != "lo" {print $4}' | tr '\\n' ' ')"
echo "RemoteAddr: $REMOTE_ADDR"
echo "$REQUEST_METHOD $REQUEST_URI"
"""
_FRONT_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "front: $(hostname)"
name="${BACKEND:-back}"
addr=$(nslookup "$name" 2>/dev/null | awk '/^Name:/ {n = 1} n && /^Address/ {print $NF; exit}')
echo "backend: $name $addr"
[ -n "$addr" ] || exit 0
printf 'GET / HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' "$name" |
    nc -w 3 "$addr" 80 | tr -d '\\r' | sed '1,/^$/d'
"""


@dataclass(frozen=True)
class TestImage:
    name: str
    cmd: tuple[str, ...] = ("sh",)
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    workdir: str = "/"
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    stop_signal: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (text, mode)
    filler: int = 0  # bytes of incompressible (but deterministic) data in /opt/filler

    def key(self) -> str:
        digest = hashlib.sha256(repr(self).encode())
        digest.update(BUSYBOX.read_bytes())
        return digest.hexdigest()[:16]


IMAGES = {
    "busybox": TestImage("busybox", files={"www/index.html": ("busybox httpd\n", 0o644)}),
    # ~5 MB compressed: busybox (~1 MB gzipped) and 4 MB that do not compress (bench/)
    "bulky": TestImage("bulky", filler=4_000_000),
    "whoami": TestImage(
        "whoami",
        cmd=("httpd", "-f", "-p", "80", "-h", "/www"),
        exposed_ports=("80/tcp",),
        stop_signal="SIGTERM",
        workdir="/www",
        labels=(("org.opencontainers.image.title", "whoami"),),
        files={"www/cgi-bin/index.cgi": (_WHOAMI_CGI, 0o755)},
    ),
    "front": TestImage(
        "front",
        cmd=("httpd", "-f", "-p", "80", "-h", "/www"),
        exposed_ports=("80/tcp",),
        stop_signal="SIGTERM",
        workdir="/www",
        files={"www/cgi-bin/index.cgi": (_FRONT_CGI, 0o755)},
    ),
}

# the same server as another image (its own digest): a second version to roll out to
IMAGES["whoami-v2"] = replace(
    IMAGES["whoami"], labels=(*IMAGES["whoami"].labels, ("org.opencontainers.image.version", "2"))
)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _fill_rootfs(rootfs: Path, image: TestImage) -> None:
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        link = rootfs / applet
        if link.name == "busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    for d, mode in (("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("home/app", 0o755)):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
        (rootfs / d).chmod(mode)
    os.chown(rootfs / "home/app", 1000, 1000)
    (rootfs / "etc/passwd").write_text(_PASSWD)
    (rootfs / "etc/group").write_text(_GROUP)
    (rootfs / "etc/hostname").write_text("")
    if image.filler:
        chunks, block = [], hashlib.sha256(b"shoal").digest()
        for _ in range(image.filler // 32 + 1):
            block = hashlib.sha256(block).digest()
            chunks.append(block)
        (rootfs / "opt").mkdir(exist_ok=True)
        (rootfs / "opt/filler").write_bytes(b"".join(chunks)[: image.filler])
    for rel, (text, mode) in image.files.items():
        path = rootfs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)


def _config_args(image: TestImage) -> list[str]:
    args = ["--os", "linux", "--architecture", "amd64", "--config.workingdir", image.workdir]
    args += ["--author", "shoal test images", "--created", "2026-01-01T00:00:00Z"]
    args += [arg for c in image.cmd for arg in ("--config.cmd", c)]
    args += [arg for e in image.entrypoint for arg in ("--config.entrypoint", e)]
    args += [arg for e in image.env for arg in ("--config.env", e)]
    args += [arg for p in image.exposed_ports for arg in ("--config.exposedports", p)]
    args += [arg for k, v in image.labels for arg in ("--config.label", f"{k}={v}")]
    if image.user:
        args += ["--config.user", image.user]
    if image.stop_signal:
        args += ["--config.stopsignal", image.stop_signal]
    return args


def build(name: str, build_dir: Path = BUILD_DIR) -> Path:
    """The OCI layout (ref name `latest`) of test image `name`, built once per content."""
    image = IMAGES[name]
    layout = build_dir / f"{name}-{image.key()}"
    if (layout / "index.json").exists():
        return layout
    build_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=build_dir, prefix=f".{name}-"))
    try:
        oci = work / "oci"
        _run("umoci", "init", "--layout", str(oci))
        _run("umoci", "new", "--image", f"{oci}:latest")
        _run("umoci", "unpack", "--image", f"{oci}:latest", str(work / "bundle"))
        _fill_rootfs(work / "bundle" / "rootfs", image)
        _run("umoci", "repack", "--image", f"{oci}:latest", str(work / "bundle"))
        _run("umoci", "config", "--image", f"{oci}:latest", *_config_args(image))
        _run("umoci", "gc", "--layout", str(oci))
        try:
            os.rename(oci, layout)
        except OSError:
            if not (layout / "index.json").exists():  # another builder won the race: fine
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return layout


def export(name: str, dest: Path, fmt: str, ref: str = "", build_dir: Path = BUILD_DIR) -> Path:
    """Write image `name` as `fmt` ("docker-archive" or "oci-archive") tagged `ref`."""
    ref = ref or f"{name}:latest"
    dest.unlink(missing_ok=True)
    _run("skopeo", "copy", "--quiet", f"oci:{build(name, build_dir)}:latest", f"{fmt}:{dest}:{ref}")
    return dest


def push_argv(name: str, target: str, build_dir: Path = BUILD_DIR) -> list[str]:
    """skopeo argv that pushes image `name` to `target` (`host:port/repo:tag`, plain HTTP)."""
    return [
        "skopeo", "copy", "--quiet", "--dest-tls-verify=false",
        f"oci:{build(name, build_dir)}:latest", f"docker://{target}",
    ]  # fmt: skip


def push(
    name: str, target: str, netns: str | None = None, creds: str = "", build_dir: Path = BUILD_DIR
) -> None:
    """Push image `name` to `target`, from inside network namespace `netns` if given."""
    argv = push_argv(name, target, build_dir)
    if creds:
        argv[3:3] = ["--dest-creds", creds]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    _run(*argv)
