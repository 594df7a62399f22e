"""Secret and config files of a container: written on a tmpfs in the bundle (`files/`),
never on disk, bind-mounted read-only at `/run/secrets/<name>` (secrets) or at the
config's target (configs; a relative name is below `/`), with the reference's uid/gid/mode."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Protocol

from shoal.agent.exec.program import TaskStartError
from shoal.api.container import ConfigReference, ReferenceFile, SecretReference, as_typed
from shoal.errors import ShoalError

__all__ = ["SecretSource", "write_secret_files"]


class SecretSource(Protocol):
    def get_secret(self, secret_id: str) -> bytes: ...

    def get_config(self, config_id: str) -> bytes: ...


def _place(files_dir: Path, index: int, data: bytes, ref: ReferenceFile, mode: int) -> Path:
    path = files_dir / str(index)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fchown(fd, int(ref.uid or 0), int(ref.gid or 0))
        os.fchmod(fd, ref.mode or mode)
    finally:
        os.close(fd)
    return path


def write_secret_files(
    files_dir: Path, secrets: list[Any] | None, configs: list[Any] | None,
    source: SecretSource | None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Mount the tmpfs, write the files, return their OCI bind mounts."""
    refs: list[SecretReference | ConfigReference] = [
        as_typed(s, SecretReference) for s in secrets or []
    ]
    refs += [as_typed(c, ConfigReference) for c in configs or []]
    if not refs:
        return []
    if source is None:
        raise TaskStartError("starting container failed: this node holds no secrets")
    files_dir.mkdir(mode=0o700)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs",
                           str(files_dir)], capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise TaskStartError(f"starting container failed: secrets tmpfs: {done.stderr.strip()}")
    mounts: list[dict[str, Any]] = []
    for index, ref in enumerate(refs):
        file = ref.file or ReferenceFile()
        try:
            if isinstance(ref, SecretReference):
                data = source.get_secret(ref.secret_id)
                name = file.name or ref.secret_name
                target = name if name.startswith("/") else f"/run/secrets/{name}"
            else:
                data = source.get_config(ref.config_id)
                name = file.name or ref.config_name
                target = name if name.startswith("/") else f"/{name}"
        except ShoalError as exc:
            raise TaskStartError(f"starting container failed: {exc}") from exc
        path = _place(files_dir, index, data, file, 0o444)
        mounts.append({"destination": target, "type": "bind", "source": str(path),
                       "options": ["rbind", "rprivate", "ro"]})  # fmt: skip
    return mounts
