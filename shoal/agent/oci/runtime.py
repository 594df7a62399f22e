"""`OciRuntime`: the exec runtime's shim, netns and veth, with `runc run` as the program.

A container task is a task dir of the exec runtime (`<state>/<id>/`: log, exit, pid of
`runc run`, netns pin) plus a bundle `<oci>/bundles/<id>/` (see `bundle`). The shim starts
`runc --root <oci>/runc run --bundle <bundle> <id>` in the foreground inside the task's
netns; runc joins that netns by path, so the container has the task's address. runc passes
stdio through, so the shim logs the container's output; `runc run` exits with the
container's status (128+signal), which the shim records. Signals go through `runc kill`
(the stop signal recorded at start replaces SIGTERM); remove = the exec runtime's remove
(veth, netns pin), then `runc delete`, unmount, rm.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from pathlib import Path

import msgspec

from shoal.agent.exec.program import DEFAULT_PATH
from shoal.agent.exec.runtime import ExecRuntime, TaskConfig, TaskStartError
from shoal.agent.exec.taskdir import ProcRef, TaskFiles, rfc3339_nano
from shoal.agent.oci.bundle import RUNC, Bundle, hosts_file, runc
from shoal.agent.oci.mounts import oci_mounts
from shoal.agent.oci.netfiles import hosts_address, resolv_conf
from shoal.agent.oci.prepare import spec_input
from shoal.agent.oci.secretfiles import SecretSource, write_secret_files
from shoal.agent.oci.spec import build_config, netns_sysctls, stop_signal
from shoal.agent.volumes import VolumeStore
from shoal.api.types import Task
from shoal.images import LocalImage, RegistryAuth

__all__ = ["OciRuntime", "decode_auth_json", "oom_killed"]

log = logging.getLogger(__name__)


def _resolv_conf() -> str:
    try:
        return Path("/etc/resolv.conf").read_text()
    except OSError:
        return ""


INIT_BINARY = Path("/usr/bin/tini-static")  # Debian's tini-static (scripts/setup.sh)


def _init_binary(wanted: bool | None) -> str:
    """The host's init for `--init` (TaskStartError in dockerd's words when it is missing)."""
    if not wanted:
        return ""
    if not INIT_BINARY.is_file():
        raise TaskStartError(
            'starting container failed: exec: "docker-init": executable file not found in $PATH'
        )
    return str(INIT_BINARY)


def decode_auth_json(raw: bytes | None) -> RegistryAuth | None:
    """A service's registry credentials (docker's AuthConfig JSON) for the image store."""
    if not raw:
        return None
    try:
        return msgspec.json.decode(raw, type=RegistryAuth)
    except msgspec.DecodeError:
        return None


class OciRuntime(ExecRuntime):
    """Runs exec tasks (host programs) and container tasks (runc) side by side."""

    def __init__(self, state_dir: Path, oci_dir: Path | None = None, **kwargs: str) -> None:
        super().__init__(state_dir, **kwargs)  # type: ignore[arg-type]
        self.oci_dir = oci_dir or Path(state_dir).parent / "oci"
        self.runc_root = self.oci_dir / "runc"
        self.cgroup_parent = "shoal"
        self.volumes_dir = self.oci_dir.parent / "volumes"  # <state root>/volumes/<name>/_data
        self.secret_source: SecretSource | None = None  # the agent session's, once it exists

    def bundle(self, task_id: str) -> Bundle:
        self._files(task_id)  # validates the id
        return Bundle(self.oci_dir / "bundles" / task_id)

    def is_container(self, task_id: str) -> bool:
        return self.bundle(task_id).meta.exists()

    def cgroups_path(self, task_id: str) -> str:
        return f"/{self.cgroup_parent}/{task_id}"

    async def start_container(
        self, cfg: TaskConfig, task: Task, image: LocalImage, extra_env: dict[str, str]
    ) -> int:
        """Start `task` from `image` at `cfg`'s address; TaskStartError in Docker's words."""
        began = time.monotonic()
        bundle = self.bundle(cfg.task_id)
        if bundle.root.exists():  # an earlier, interrupted life of this task id
            await asyncio.to_thread(bundle.remove, self.runc_root, cfg.task_id)
        spec = task.spec.container_spec
        assert spec is not None
        etc = {
            "hosts": hosts_file(hosts_address(task, str(cfg.address.ip)), cfg.hostname, spec.hosts),
            "hostname": cfg.hostname + "\n",
            "resolv.conf": resolv_conf(task, _resolv_conf()),
        }
        created = rfc3339_nano(time.time_ns())
        mounts, mount_views = oci_mounts(spec.mounts, VolumeStore(self.volumes_dir), created)
        self.runc_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread(bundle.create_dir)
        try:
            mounts += write_secret_files(
                bundle.root / "files", spec.secrets, spec.configs, self.secret_source
            )
        except BaseException:
            await asyncio.to_thread(bundle.remove, self.runc_root, cfg.task_id)
            raise
        inp = spec_input(
            task,
            image,
            extra_env,
            str(self.netns_dir / self.netns_name(cfg.task_id)),
            self.cgroups_path(cfg.task_id),
            mounts,
            {f"/etc/{name}": str(bundle.etc_file(name)) for name in etc},
            _init_binary(spec.init),
        )
        inp = dataclasses.replace(inp, hostname=cfg.hostname)
        config = build_config(inp)
        limits = inp.limits
        meta = {
            "image_id": image.id,
            "image": spec.image,
            "stop_signal": stop_signal(spec.stop_signal, image.config.stop_signal),
            "stop_signal_name": spec.stop_signal or image.config.stop_signal,
            "cgroups_path": inp.cgroups_path,
            "name": f"{task.service_name}.{task.slot or task.node_id}.{task.id}",
            "created": created,
            "mounts": mount_views,
            "labels": {
                **(spec.labels or {}),
                "com.docker.swarm.service.id": task.service_id,
                "com.docker.swarm.service.name": task.service_name,
                "com.docker.swarm.task.id": task.id,
                "com.docker.swarm.task.name": f"{task.service_name}.{task.slot or task.node_id}",
                "com.docker.swarm.node.id": task.node_id,
            },
            "argv": inp.argv,
            "env": config["process"]["env"],
            "user": spec.user or image.config.user,
            "cwd": inp.cwd,
            "hostname": inp.hostname,
            "memory": limits.memory_bytes if limits else 0,
            "nano_cpus": limits.nano_cpus if limits else 0,
            "pids": limits.pids if limits else 0,
            "read_only": inp.read_only,
        }
        try:
            await asyncio.to_thread(bundle.create, image.rootfs, meta)
            bundle.write_files(config, etc)
            # --keep: the stopped container (and its cgroup, with its OOM count) stays
            # until `remove`, which reads it first
            argv = [RUNC, "--root", str(self.runc_root), "run", "--keep", "--bundle",
                    str(bundle.root), cfg.task_id]  # fmt: skip
            pid = await self.start(
                dataclasses.replace(
                    cfg,
                    argv=argv,
                    env={"PATH": DEFAULT_PATH},
                    workdir=None,
                    sysctls=netns_sysctls(inp),
                )
            )
        except BaseException:
            await asyncio.to_thread(bundle.remove, self.runc_root, cfg.task_id)
            raise
        log.info(
            "task %s: container of %s started in %.1f ms (incl. bundle)",
            cfg.task_id, image.id[:19], (time.monotonic() - began) * 1e3,
        )  # fmt: skip
        return pid

    def container_pid(self, task_id: str) -> int | None:
        """The container's init as the host sees it (runc state), or None."""
        state = self.runc_root / task_id / "state.json"
        try:
            import json

            data = json.loads(state.read_text())
            pid = int(data["init_process_pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if pid > 0 else None

    def _signal_program(self, task_id: str, sig: int) -> bool:
        if not self.is_container(task_id):
            return super()._signal_program(task_id, sig)
        runner = ProcRef.load(TaskFiles(self.state_dir / task_id).pid)
        if runner is None or not runner.alive():
            return False
        if sig == signal.SIGTERM:
            sig = int(self.bundle(task_id).read_meta().get("stop_signal") or signal.SIGTERM)
        done = runc(self.runc_root, "kill", task_id, str(sig), check=False)
        if done.returncode != 0:  # not created yet: runc run forwards what it gets
            with_runc = super()._signal_program(task_id, sig)
            return with_runc
        return True

    async def remove(self, task_id: str) -> None:
        """Everything of the container goes but its record (oci.json): `docker ps -a` shows
        it exited, OOM-killed or not, until `purge`."""
        await super().remove(task_id)
        bundle = self.bundle(task_id)
        if bundle.meta.exists() and oom_killed(self.cgroups_path(task_id)):
            bundle.record(oom_killed=True)
        await asyncio.to_thread(bundle.remove, self.runc_root, task_id, True)
        await asyncio.to_thread(_remove_cgroup, self.cgroups_path(task_id))

    async def purge(self, task_id: str) -> None:
        await super().purge(task_id)
        await asyncio.to_thread(self.bundle(task_id).remove, self.runc_root, task_id)

    def leftovers(self) -> list[str]:
        """Task ids with files but nothing running (for the agent's purge after a restart)."""
        bundles = self.oci_dir / "bundles"
        found = set(super().leftovers())
        if bundles.is_dir():
            found.update(e.name for e in bundles.iterdir() if not (e / "config.json").exists())
        return sorted(found)

    def image_user(self, image_id: str) -> str | None:
        """A task (container) that uses `image_id`, for `image rm`'s refusal."""
        bundles = self.oci_dir / "bundles"
        if not bundles.is_dir():
            return None
        for entry in sorted(bundles.iterdir()):
            if Bundle(entry).read_meta().get("image_id") == image_id:
                return entry.name
        return None

    def exec_argv(self, task_id: str, argv: list[str], user: str = "", env: list[str] | None = None,
                  workdir: str = "", tty: bool = False) -> list[str]:  # fmt: skip
        """`runc exec` of `argv` inside the task's container."""
        out = [RUNC, "--root", str(self.runc_root), "exec"]
        if tty:
            out.append("--tty")
        if user:
            out += ["--user", user]
        for entry in env or []:
            out += ["--env", entry]
        if workdir:
            out += ["--cwd", workdir]
        return [*out, task_id, *argv]


def oom_killed(path: str, base: Path = Path("/sys/fs/cgroup")) -> bool:
    """Whether the kernel's OOM killer killed in the task's memory cgroup (v1's
    memory.oom_control or v2's memory.events `oom_kill` count)."""
    rel = path.lstrip("/")
    for stats in (base / "memory" / rel / "memory.oom_control", base / rel / "memory.events"):
        try:
            text = stats.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                return True
    return False


def _remove_cgroup(path: str, base: Path = Path("/sys/fs/cgroup")) -> None:
    """The task's cgroup in every hierarchy (runc delete leaves it when its state is gone,
    e.g. after a daemon was killed), then the shared parent once it is empty."""
    rel = Path(path.lstrip("/"))
    for hierarchy in (base.iterdir() if base.is_dir() else ()):
        for directory in (hierarchy / rel, hierarchy / rel.parent):
            with contextlib.suppress(OSError):  # busy, not empty or already gone
                directory.rmdir()
