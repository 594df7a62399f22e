"""Docker's shapes for what a task's container is given: mounts, resources, secret and config
references, ulimits, privileges (API 1.47, `ContainerSpec.Mounts` etc.).

These are the typed forms of `ContainerSpec` fields that `types.py` still holds loosely; a
consumer turns a loose value into one of these with `as_typed(value, list[Mount])`, which
works whether the field already holds the struct or the JSON-shaped dict.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec
from msgspec import field

__all__ = [
    "ConfigReference",
    "DriverConfig",
    "Mount",
    "MountBindOptions",
    "MountTmpfsOptions",
    "MountVolumeOptions",
    "Privileges",
    "ReferenceFile",
    "ResourceRequirements",
    "Resources",
    "SecretReference",
    "Ulimit",
    "as_typed",
]

T = TypeVar("T")


class _Base(msgspec.Struct, rename="pascal", omit_defaults=True, forbid_unknown_fields=True):
    pass


class _Loose(msgspec.Struct, rename="pascal", omit_defaults=True):
    """Shapes whose optional corners shoal does not act on: unknown fields are accepted."""


class MountBindOptions(_Loose):
    propagation: str = ""
    non_recursive: bool = False
    create_mountpoint: bool = False
    read_only_non_recursive: bool = False
    read_only_force_recursive: bool = False


class DriverConfig(_Loose):
    name: str = ""
    options: dict[str, str] | None = None


class MountVolumeOptions(_Loose):
    no_copy: bool = False
    labels: dict[str, str] | None = None
    driver_config: DriverConfig | None = None
    subpath: str = ""


class MountTmpfsOptions(_Loose):
    size_bytes: int = 0
    mode: int = 0
    options: list[list[str]] | None = None


class Mount(_Loose):
    target: str = ""
    source: str = ""
    type: Literal["", "bind", "volume", "tmpfs", "npipe", "cluster", "image"] = ""
    read_only: bool = False
    consistency: str = ""
    bind_options: MountBindOptions | None = None
    volume_options: MountVolumeOptions | None = None
    tmpfs_options: MountTmpfsOptions | None = None


class Resources(_Loose):
    nano_cpus: int = field(default=0, name="NanoCPUs")
    memory_bytes: int = 0
    pids: int = 0
    generic_resources: list[Any] | None = None


class ResourceRequirements(_Loose):
    limits: Resources | None = None
    reservations: Resources | None = None
    memory_swappiness: int | None = None
    oom_kill_disable: bool | None = None


class ReferenceFile(_Base):
    """Where a secret or config appears in the container (`File` of a reference)."""

    name: str = ""
    uid: str = field(default="", name="UID")
    gid: str = field(default="", name="GID")
    mode: int = 0


class SecretReference(_Base):
    file: ReferenceFile | None = None
    secret_id: str = field(default="", name="SecretID")
    secret_name: str = ""


class ConfigReference(_Base):
    file: ReferenceFile | None = None
    runtime: dict[str, Any] | None = None
    config_id: str = field(default="", name="ConfigID")
    config_name: str = ""


class Ulimit(_Base):
    name: str = ""
    soft: int = 0
    hard: int = 0


class Privileges(_Loose):
    credential_spec: Any = None
    se_linux_context: Any = field(default=None, name="SELinuxContext")
    seccomp: Any = None
    app_armor: Any = None
    no_new_privileges: bool = False


def as_typed(value: Any, typ: type[T]) -> T:
    """`value` (a struct of the right shape, a JSON-shaped dict/list, or None) as `typ`."""
    if value is None:
        return msgspec.convert([] if _is_list(typ) else {}, typ)
    return msgspec.convert(msgspec.to_builtins(value), typ)


def _is_list(typ: Any) -> bool:
    return getattr(typ, "__origin__", None) is list
