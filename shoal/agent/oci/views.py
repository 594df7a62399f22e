"""The node's task containers for the Docker API (`TaskContainers` of shoal.httpapi).

Views are built fresh from the bundles' `oci.json` (written at start), the runc state and the
exec runtime's task files on every call: nothing is cached, so a view never lags the disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from shoal.agent.exec.taskdir import ProcRef, TaskFiles, read_json
from shoal.agent.exec.watch import read_exit
from shoal.agent.oci.bundle import RUNC, Bundle, runc
from shoal.agent.oci.prepare import read_etc
from shoal.agent.oci.runtime import OciRuntime
from shoal.agent.oci.users import numeric_user
from shoal.api.taskcontainers import (
    ContainerView,
    ExecOptions,
    NoSuchContainer,
    runc_exec_argv,
)

__all__ = ["RuntimeContainers"]

_ZERO = "0001-01-01T00:00:00Z"


def _health(files: TaskFiles) -> str:
    """What the task's controller recorded (`docker ps`: `Up 5 seconds (healthy)`)."""
    try:
        text = files.health.read_text().strip()
    except OSError:
        return ""
    return text if text in ("starting", "healthy", "unhealthy") else ""


class RuntimeContainers:
    """`TaskContainers` over an `OciRuntime`'s bundles."""

    def __init__(self, runtime: OciRuntime) -> None:
        self.runtime = runtime

    def _view(self, bundle: Bundle) -> ContainerView | None:
        meta = bundle.read_meta()
        if not meta:
            return None
        task_id = bundle.root.name
        files = TaskFiles(self.runtime.state_dir / task_id)
        runner = ProcRef.load(files.pid)
        alive = runner is not None and runner.alive()
        status = read_exit(files.exit)
        exit_doc = read_json(files.exit)
        finished = exit_doc.get("finished") if isinstance(exit_doc, dict) else None
        state = "running" if alive else ("exited" if status is not None else "created")
        return ContainerView(
            id=task_id,
            name=str(meta.get("name", task_id)),
            image=str(meta.get("image", "")),
            image_id=str(meta.get("image_id", "")),
            created=str(meta.get("created", _ZERO)),
            status=state,
            pid=(self.runtime.container_pid(task_id) or 0) if alive else 0,
            exit_code=status.code if status is not None and not alive else 0,
            oom_killed=bool(meta.get("oom_killed", False)),
            started_at=str(meta.get("created", _ZERO)),
            finished_at=str(finished) if finished and not alive else _ZERO,
            entrypoint=tuple(meta.get("argv", [])[:1]),
            cmd=tuple(meta.get("argv", [])[1:]),
            env=tuple(meta.get("env", [])),
            user=str(meta.get("user", "")),
            working_dir=str(meta.get("cwd", "")),
            hostname=str(meta.get("hostname", "")),
            labels=dict(meta.get("labels", {})),
            stop_signal=str(meta.get("stop_signal_name", "")),
            memory=int(meta.get("memory", 0)),
            nano_cpus=int(meta.get("nano_cpus", 0)),
            pids_limit=int(meta.get("pids", 0)),
            readonly_rootfs=bool(meta.get("read_only", False)),
            mounts=tuple(meta.get("mounts", [])),
            log_path=files.log,
            cgroup_path=str(meta.get("cgroups_path", "")),
            health=_health(files) if alive else "",
        )

    def containers(self) -> Sequence[ContainerView]:
        root = self.runtime.oci_dir / "bundles"
        if not root.is_dir():
            return ()
        views = (self._view(Bundle(entry)) for entry in sorted(root.iterdir()))
        return tuple(v for v in views if v is not None)

    def _known(self, container_id: str) -> None:
        if not self.runtime.is_container(container_id):
            raise NoSuchContainer(container_id)

    def exec_argv(self, container_id: str, opts: ExecOptions) -> list[str]:
        """runc wants numeric ids: a `-u NAME[:GROUP]` is resolved in the container's own
        /etc/passwd and /etc/group (UnknownUser in Docker's words)."""
        self._known(container_id)
        if opts.user:
            rootfs = self.runtime.bundle(container_id).rootfs
            uid_gid = numeric_user(opts.user, read_etc(rootfs, "passwd"), read_etc(rootfs, "group"))
            opts = dataclasses.replace(opts, user=uid_gid)
        return runc_exec_argv(self.runtime.runc_root, container_id, opts, runc=RUNC)

    async def signal(self, container_id: str, signum: int) -> None:
        self._known(container_id)
        await asyncio.to_thread(
            runc, self.runtime.runc_root, "kill", container_id, str(signum), check=False
        )

    async def remove(self, container_id: str) -> None:
        """`docker rm`: the container, its record and its logs (dockerd keeps nothing)."""
        self._known(container_id)
        await self.runtime.purge(container_id)
