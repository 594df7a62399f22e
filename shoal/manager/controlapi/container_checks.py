"""Validation of what a task's container is given: mounts, resources, ulimits, sysctls,
capabilities, OOM score: pure, no I/O.

Messages are swarmkit's (`invalid mount target, must be an absolute path: ...`) or dockerd's
(`invalid mount config for type "bind": field Source must not be empty`, `Minimum memory
limit allowed is 6MB`), which is what a swarm user sees for the same spec. Whether a bind
source exists is a node's question (the runtime fails the task with dockerd's words).
"""

from __future__ import annotations

import re

from shoal.api.container import Mount, ResourceRequirements, Resources, Ulimit
from shoal.api.templates import TemplateError, check_template
from shoal.api.types import ContainerSpec
from shoal.errors import InvalidArgument

__all__ = [
    "CAPABILITIES",
    "MIN_MEMORY_LIMIT",
    "check_container",
    "check_mounts",
    "check_resources",
]

MIN_MEMORY_LIMIT = 6 * 1024 * 1024  # dockerd's linux minimum
MIN_MEMORY_RESERVATION = 4 * 1024 * 1024  # swarmkit's
MIN_NANO_CPUS = 1_000_000
CAPABILITIES = frozenset(
    "CAP_" + name
    for name in [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ]
)
ULIMITS = frozenset(
    [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ]
)
_SYSCTL = re.compile(r"^[a-zA-Z0-9_]+(?:[./][a-zA-Z0-9_\-]+)*$")
_PROPAGATION = ("", "private", "rprivate", "shared", "rshared", "slave", "rslave")


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"rpc error: code = InvalidArgument desc = {message}")


def _mount_config(mount: Mount, message: str) -> InvalidArgument:
    return _bad(f'invalid mount config for type "{mount.type}": {message}')


def _check_mount(mount: Mount) -> None:
    if mount.type not in ("bind", "volume", "tmpfs"):
        raise _bad(f'invalid mount config for type "{mount.type}": mount type unknown')
    if not mount.target.startswith("/"):
        raise _bad(f"invalid mount target, must be an absolute path: {mount.target}")
    for options, name in (
        (mount.bind_options, "bind"),
        (mount.volume_options, "volume"),
        (mount.tmpfs_options, "tmpfs"),
    ):
        if options is not None and mount.type != name:
            raise _mount_config(mount, f"field {name.title()}Options must not be specified")
    if mount.type == "bind":
        if not mount.source:
            raise _mount_config(mount, "field Source must not be empty")
        if not mount.source.startswith("/"):
            raise _mount_config(
                mount, f"invalid mount path: '{mount.source}' mount path must be absolute"
            )
        propagation = mount.bind_options.propagation if mount.bind_options else ""
        if propagation not in _PROPAGATION:
            raise _mount_config(mount, f"invalid propagation mode: {propagation}")
    elif mount.type == "tmpfs":
        if mount.source:
            raise _mount_config(mount, "field Source must not be specified")
        if mount.tmpfs_options is not None and mount.tmpfs_options.size_bytes < 0:
            raise _mount_config(mount, "invalid tmpfs size: must not be negative")
    elif mount.source and "/" in mount.source:
        raise _mount_config(
            mount,
            f"invalid volume name {mount.source!r}: a named volume "
            "has no '/' (use type=bind for a host path)",
        )


def check_mounts(mounts: list[Mount]) -> None:
    seen: set[str] = set()
    for mount in mounts:
        _check_mount(mount)
        target = mount.target.rstrip("/") or "/"
        if target in seen:
            raise _bad(f"mount target {mount.target} is used more than once")
        seen.add(target)


def _check_amounts(res: Resources, what: str, min_memory: int) -> None:
    if res.nano_cpus != 0 and res.nano_cpus < MIN_NANO_CPUS:
        raise _bad(f"invalid cpu value {res.nano_cpus / 1e9:g}: Must be at least 0.001")
    if res.memory_bytes < 0:
        raise _bad(f"invalid memory value {res.memory_bytes}: must not be negative")
    if res.memory_bytes and res.memory_bytes < min_memory:
        if what == "limit":
            raise _bad("Minimum memory limit allowed is 6MB")
        raise _bad(f"invalid memory value {res.memory_bytes}: Must be at least 4MiB")
    if res.pids < 0:
        raise _bad(f"invalid pids limit {res.pids}: must be 0 (unlimited) or positive")


def check_resources(req: ResourceRequirements) -> None:
    limits, reserve = req.limits or Resources(), req.reservations or Resources()
    _check_amounts(limits, "limit", MIN_MEMORY_LIMIT)
    _check_amounts(reserve, "reservation", MIN_MEMORY_RESERVATION)
    if reserve.pids:
        raise _bad("pids can only be limited, not reserved")
    if limits.memory_bytes and reserve.memory_bytes > limits.memory_bytes:
        raise _bad("Minimum memory limit can not be less than memory reservation limit, see usage")
    if limits.nano_cpus and reserve.nano_cpus > limits.nano_cpus:
        raise _bad(
            f"cpu reservation {reserve.nano_cpus / 1e9:g} can not be more than the cpu limit "
            f"{limits.nano_cpus / 1e9:g}"
        )


def _check_ulimits(ulimits: list[Ulimit]) -> None:
    seen: set[str] = set()
    for ulimit in ulimits:
        if ulimit.name not in ULIMITS:
            raise _bad(f"invalid ulimit type: {ulimit.name}")
        if ulimit.name in seen:
            raise _bad(f"ulimit {ulimit.name} is given more than once")
        seen.add(ulimit.name)
        if ulimit.soft > ulimit.hard:
            raise _bad(
                "ulimit soft limit must be less than or equal to hard limit: "
                f"{ulimit.soft} > {ulimit.hard}"
            )


def _check_caps(caps: list[str] | None) -> None:
    for cap in caps or []:
        if cap != "ALL" and cap not in CAPABILITIES:
            raise _bad(f"unknown capability: {cap!r}")


def check_container(container: ContainerSpec) -> None:
    try:  # swarmkit expands the templates with placeholder values
        check_template(container.hostname)
    except TemplateError as exc:
        raise _bad(str(exc)) from None
    check_mounts(container.mounts or [])
    _check_ulimits(container.ulimits or [])
    for key in container.sysctls or {}:
        if not _SYSCTL.match(key):
            raise _bad(f"invalid sysctl key {key!r}")
    _check_caps(container.capability_add)
    _check_caps(container.capability_drop)
    if not -1000 <= container.oom_score_adj <= 1000:
        raise _bad(
            f"Invalid value {container.oom_score_adj}, range for oom score adj is [-1000, 1000]"
        )
