"""What the container endpoints need from a node's runtime: a read-only view of its task
containers and three actions (exec command line, signal, remove).

The runtime implements `TaskContainers`; the API resolves references (full id, name with or
without its leading "/", unique id prefix) the way Docker does and never touches runc state
itself. A view is a snapshot: the runtime builds a fresh one on every `containers()` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shoal.errors import Ambiguous, NotFound

__all__ = [
    "ContainerView",
    "ExecOptions",
    "NetworkAttachment",
    "NoSuchContainer",
    "TaskContainers",
    "resolve",
    "runc_exec_argv",
]


@dataclass(frozen=True)
class NetworkAttachment:
    network_id: str
    ip: str  # "" when the task has no address on it
    prefix_len: int = 0
    mac: str = ""
    gateway: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerView:
    id: str  # the runc container id (Docker shows its first 12 characters)
    name: str  # swarm's "<service>.<slot>.<task id>" (no leading "/")
    image: str
    image_id: str
    created: str  # RFC 3339
    status: str  # Docker's: created | running | exited | dead
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    health: str = ""  # "" (no healthcheck), starting | healthy | unhealthy
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    memory: int = 0  # bytes, 0 = unlimited
    nano_cpus: int = 0
    pids_limit: int = 0
    readonly_rootfs: bool = False
    init: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    mounts: tuple[dict[str, object], ...] = ()  # Docker's MountPoint shape
    networks: dict[str, NetworkAttachment] = field(default_factory=dict)
    log_path: Path | None = None  # {"time","stream","log"} JSON lines
    cgroup_path: str = ""  # runc's cgroupsPath, e.g. "/shoal/<id>"

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class ExecOptions:
    argv: tuple[str, ...]
    tty: bool = False
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""


class TaskContainers(Protocol):
    def containers(self) -> Sequence[ContainerView]: ...

    def exec_argv(self, container_id: str, opts: ExecOptions) -> list[str]:
        """The host command line that runs `opts.argv` in the container (`runc exec ...`)."""
        ...

    async def signal(self, container_id: str, signum: int) -> None:
        """Send a signal to the container's process (the task then fails and is replaced)."""
        ...

    async def remove(self, container_id: str) -> None:
        """Forget a container that is not running (its task is already over)."""
        ...


class NoSuchContainer(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such container: {ref}")


def resolve(views: Sequence[ContainerView], ref: str) -> ContainerView:
    """Docker's lookup order: full id, exact name, then a unique id prefix."""
    if not ref:
        raise NoSuchContainer(ref)
    name = ref.removeprefix("/")
    for view in views:
        if view.id == ref:
            return view
    for view in views:
        if view.name == name:
            return view
    matches = [v for v in views if v.id.startswith(ref)]
    if len(matches) > 1:
        raise Ambiguous(f"Multiple IDs found with provided prefix: {ref}")
    if not matches:
        raise NoSuchContainer(ref)
    return matches[0]


def runc_exec_argv(
    runc_root: Path, container_id: str, opts: ExecOptions, runc: str = "runc"
) -> list[str]:
    """`runc exec` for one exec (a helper for runtimes that keep runc state under `runc_root`)."""
    argv = [runc, "--root", str(runc_root), "exec"]
    if opts.tty:
        argv.append("--tty")
    for item in opts.env:
        argv += ["--env", item]
    if opts.user:
        argv += ["--user", opts.user]
    if opts.working_dir:
        argv += ["--cwd", opts.working_dir]
    return [*argv, container_id, *opts.argv]
