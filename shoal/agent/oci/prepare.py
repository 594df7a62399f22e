"""From a task and its image to `SpecInput` (reads only the image's /etc/passwd, /etc/group)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoal.agent.exec.program import TaskStartError
from shoal.agent.oci.spec import SpecInput, merge_env, process_args
from shoal.agent.oci.users import UnknownUser, resolve_user
from shoal.api.container import ResourceRequirements, Ulimit, as_typed
from shoal.api.types import ContainerSpec, Task
from shoal.images import LocalImage

__all__ = ["EXEC_LABEL", "is_exec_task", "read_etc", "spec_input"]

EXEC_LABEL = "shoal.runtime"


def is_exec_task(spec: ContainerSpec | None) -> bool:
    """The exec runtime runs a task iff its container labels say `shoal.runtime=exec`."""
    return spec is not None and (spec.labels or {}).get(EXEC_LABEL) == "exec"


def read_etc(rootfs: Path, name: str) -> str:
    path = rootfs / "etc" / name
    try:
        if path.is_symlink():  # never follow an image's link out of its rootfs
            return ""
        return path.read_text(errors="replace")
    except OSError:
        return ""


def spec_input(
    task: Task,
    image: LocalImage,
    extra_env: dict[str, str],
    netns_path: str,
    cgroups_path: str,
    mounts: list[dict[str, Any]],
    etc_files: dict[str, str],
    init_binary: str = "",
) -> SpecInput:
    spec = task.spec.container_spec
    assert spec is not None
    cfg = image.config
    try:
        user = resolve_user(
            spec.user or cfg.user,
            read_etc(image.rootfs, "passwd"),
            read_etc(image.rootfs, "group"),
            spec.groups,
        )
    except UnknownUser as exc:
        raise TaskStartError(f"starting container failed: {exc.message}") from None
    resources = as_typed(task.spec.resources, ResourceRequirements) if task.spec.resources else None
    return SpecInput(
        task_id=task.id,
        hostname=spec.hostname or task.id[:12],
        argv=process_args(cfg.entrypoint, cfg.cmd, spec.command, spec.args),
        env=merge_env(cfg.env, spec.env, extra_env),
        cwd=spec.dir or cfg.working_dir or "/",
        user=user,
        netns_path=netns_path,
        cgroups_path=cgroups_path,
        read_only=spec.read_only,
        cap_add=list(spec.capability_add or []),
        cap_drop=list(spec.capability_drop or []),
        sysctls=dict(spec.sysctls or {}),
        ulimits=[as_typed(u, Ulimit) for u in spec.ulimits or []],
        oom_score_adj=spec.oom_score_adj,
        limits=resources.limits if resources else None,
        mounts=mounts,
        etc_files=etc_files,
        init_binary=init_binary if spec.init else "",
    )
