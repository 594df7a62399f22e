"""A task's OCI bundle on disk: `<oci state>/<task id>/` (I/O; the spec itself is `spec`).

    config.json            runc's spec
    rootfs/                overlayfs: lower = the image's rootfs (never written), upper/work here
    upper/ work/           the container's writable layer
    hosts hostname resolv.conf   bind-mounted over the container's /etc files
    oci.json               what the runtime needs later: image id, stop signal, cgroups path
                           (and, once exited, whether the kernel's OOM killer ended it)

`remove` undoes it all (runc delete, unmount, rm) and is safe to repeat; with `keep_record`
only oci.json stays, the exited container `docker ps -a` shows until the task is purged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.agent.exec.program import TaskStartError

__all__ = ["Bundle", "hosts_file", "runc"]

RUNC = shutil.which("runc") or "/usr/sbin/runc"


def runc(runc_root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one runc command against this node's runc state root."""
    return subprocess.run(
        [RUNC, "--root", str(runc_root), *args], capture_output=True, text=True, check=check
    )


def hosts_file(address: str, hostname: str, extra: list[str] | None) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{address}\t{hostname}",
    ]
    for entry in extra or []:  # Docker's swarm form: "IP host [alias...]"
        ip, _, names = entry.strip().partition(" ")
        if names.strip():
            lines.append(f"{ip}\t{names.strip()}")
    return "\n".join(lines) + "\n"


def _is_mount(path: Path, parent: Path) -> bool:
    try:
        return os.stat(path).st_dev != os.stat(parent).st_dev
    except OSError:
        return False


@dataclass(frozen=True)
class Bundle:
    root: Path

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def meta(self) -> Path:
        return self.root / "oci.json"

    def etc_file(self, name: str) -> Path:
        return self.root / name

    def read_meta(self) -> dict[str, Any]:
        try:
            data = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def create_dir(self) -> None:
        self.root.mkdir(parents=True, mode=0o700)

    def create(self, lower: Path, meta: dict[str, Any]) -> None:
        """Mount the overlay root in the (new) bundle dir; on failure nothing is left."""
        try:
            self.meta.write_text(json.dumps(meta))
            for sub in ("rootfs", "upper", "work"):
                (self.root / sub).mkdir()
            options = (
                f"lowerdir={lower},upperdir={self.root / 'upper'},workdir={self.root / 'work'}"
            )
            done = subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", options, str(self.rootfs)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise TaskStartError(
                    "starting container failed: mounting the root filesystem: "
                    + done.stderr.strip()
                )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def write_files(self, config: dict[str, Any], etc: dict[str, str]) -> None:
        for name, text in etc.items():
            self.etc_file(name).write_text(text)
        tmp = self.root / "config.json.tmp"
        tmp.write_text(json.dumps(config))
        os.replace(tmp, self.root / "config.json")

    def mounted(self) -> bool:
        return _is_mount(self.rootfs, self.root)

    def record(self, **fields: Any) -> None:
        """Add `fields` to oci.json (what an exited container still shows)."""
        meta = self.read_meta()
        if meta:
            meta.update(fields)
            tmp = self.root / "oci.json.tmp"
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, self.meta)

    def remove(self, runc_root: Path, container_id: str, keep_record: bool = False) -> None:
        """runc delete (its cgroup goes with it), unmount, delete every file; with
        `keep_record`, oci.json stays: the exited container of a task until it is purged."""
        if self.root.exists() or (runc_root / container_id).exists():
            runc(runc_root, "delete", "--force", container_id, check=False)
        for mount in (self.rootfs, self.root / "files"):
            if _is_mount(mount, self.root):
                done = subprocess.run(["umount", str(mount)], capture_output=True, text=True)
                if done.returncode != 0:
                    subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        if keep_record and self.meta.exists():
            for entry in self.root.iterdir():
                if entry == self.meta:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.root)
