"""A service's `Mounts` as OCI mounts (bind, named volume, tmpfs), checked like Docker.

Impure rim: a bind source must exist on the node (Docker's error words otherwise) and a
named volume is created through `VolumeStore` (idempotent), so `docker volume ls` shows it.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from shoal.agent.exec.program import TaskStartError
from shoal.agent.volumes import VolumeStore
from shoal.api.container import Mount, as_typed

__all__ = ["oci_mounts"]


def _bind(m: Mount) -> dict[str, Any]:
    if not m.source or not os.path.isabs(m.source):
        raise TaskStartError(
            f'invalid mount config for type "bind": invalid mount path: \'{m.source}\' '
            "mount path must be absolute"
        )
    if not os.path.exists(m.source):
        raise TaskStartError(
            'invalid mount config for type "bind": bind source path does not exist: '
            + m.source
        )
    propagation = (m.bind_options.propagation if m.bind_options else "") or "rprivate"
    options = ["rbind", propagation, "ro" if m.read_only else "rw"]
    return {"destination": m.target, "type": "bind", "source": m.source, "options": options}


def _tmpfs(m: Mount) -> dict[str, Any]:
    options = ["nosuid", "nodev", "noexec"]
    opts = m.tmpfs_options
    if opts is not None and opts.size_bytes:
        options.append(f"size={opts.size_bytes}")
    if opts is not None and opts.mode:
        options.append(f"mode={opts.mode:o}")
    if m.read_only:
        options.append("ro")
    return {"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": options}


def oci_mounts(
    raw: list[Any] | None, volumes: VolumeStore, now: str
) -> tuple[list[dict[str, Any]], list[dict[str, object]]]:
    """(OCI mounts, Docker MountPoint views) for the service's mounts."""
    out: list[dict[str, Any]] = []
    views: list[dict[str, object]] = []
    for item in raw or []:
        m = as_typed(item, Mount)
        if not m.target or not os.path.isabs(m.target):
            raise TaskStartError(f"invalid mount config: invalid mount path: '{m.target}'")
        kind = m.type or "volume"
        name = ""
        if kind == "bind":
            out.append(_bind(m))
        elif kind == "tmpfs":
            out.append(_tmpfs(m))
        elif kind == "volume":
            name = m.source or secrets.token_hex(32)  # anonymous volume: Docker's 64 hex
            labels = m.volume_options.labels if m.volume_options else None
            try:
                vol = volumes.create(name, now, labels)
            except Exception as exc:  # a bad name: Docker's words from the store
                raise TaskStartError(f"invalid mount config: {exc}") from exc
            options = ["rbind", "rprivate", "ro" if m.read_only else "rw"]
            out.append({"destination": m.target, "type": "bind",
                        "source": str(vol.mountpoint), "options": options})  # fmt: skip
        else:
            raise TaskStartError(f'invalid mount config: mount type "{kind}" is not supported')
        views.append({
            "Type": kind, "Name": name,
            "Source": out[-1]["source"] if kind != "tmpfs" else "", "Destination": m.target,
            "Driver": "local" if kind == "volume" else "", "Mode": "",
            "RW": not m.read_only, "Propagation": "rprivate" if kind == "bind" else "",
        })  # fmt: skip
    return out, views
