"""The exec task runtime: each task is a host program in its own netns on the node bridge.

Layout per task (see `taskdir`): netns `<netns_prefix><id[:12]>` pinned in /run/netns of
the host mount namespace, veth `<veth_prefix><id[:11]>` on the bridge with `eth0` inside,
and a shim process (`shim.py`) that owns the program, its log and its exit status. Shims
are forked by the runtime's zygote (`zygote.py`, asked through `shimspawn`), which also
removes netns pins from the host mount namespace. The shim survives the daemon and the
zygote, so a new `ExecRuntime` on the same state dir finds the tasks with `existing()` and
watches them again with `adopt()`.

Invariants: `start` either returns a running program's pid or leaves nothing behind; every
pid is checked against its recorded start time before it is signalled; nothing here touches
a namespace the runtime did not create, and `ensure_node_network` refuses the root netns.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import shoal
from shoal.agent.exec import netsetup, nsutil
from shoal.agent.exec.handshake import Handshake, ShimGone
from shoal.agent.exec.netns_call import in_netns
from shoal.agent.exec.program import DEFAULT_PATH, TaskStartError, program_env, resolve_program
from shoal.agent.exec.shimspawn import ShimZygote
from shoal.agent.exec.taskdir import ProcRef, TaskFiles, read_json, write_json_atomic
from shoal.agent.exec.watch import UNKNOWN, ExitStatus, read_exit, wait_gone
from shoal.errors import InvalidArgument, ShoalError

__all__ = [
    "DEFAULT_PATH",
    "ExecRuntime",
    "ExitStatus",
    "TaskConfig",
    "TaskRecord",
    "TaskStartError",
    "check_not_root_netns",
]

log = logging.getLogger(__name__)

_HANDSHAKE_TIMEOUT = 10.0
_KILL_WAIT = 5.0
_PACKAGE_ROOT = str(Path(shoal.__file__).resolve().parent.parent)


@dataclass(frozen=True)
class TaskConfig:
    task_id: str
    hostname: str
    argv: list[str]
    env: dict[str, str]
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address
    workdir: str | None = None
    # written in the task's netns once it is plumbed, before the program runs
    sysctls: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    address: ipaddress.IPv4Interface
    alive: bool


def _set_task_sysctls(netns_fd: int, sysctls: dict[str, str]) -> None:
    def write() -> None:
        for name, value in sysctls.items():
            try:
                netsetup.set_sysctl(name, value)
            except OSError as exc:
                raise TaskStartError(
                    f"starting container failed: sysctl {name}={value}: {exc.strerror or exc}"
                ) from None

    in_netns(netns_fd, write, "netns-sysctl")


def check_not_root_netns(own: int | None, root: int | None, allow: bool) -> None:
    """Refuse to program the root network namespace (also when it cannot be told apart)."""
    if allow:
        return
    if own is None or root is None or own == root:
        raise ShoalError(
            "refusing to set up the node network in the root network namespace (run the "
            "daemon in its own netns, e.g. `shoal lab`, or set SHOAL_ALLOW_ROOT_NETNS=1)"
        )


@dataclass(frozen=True)
class _Shim:
    pid: int
    ref: ProcRef | None  # None if it is gone already
    talk: tuple[int, int]  # the runtime's ends of the handshake: to the shim, from it


@dataclass
class _Task:
    """What this runtime object knows about a task beyond its files."""

    watch: asyncio.Task[ExitStatus]
    shim: ProcRef | None = field(default=None)  # a shim this object started (mid-start)


class ExecRuntime:
    def __init__(
        self,
        state_dir: Path,
        bridge: str = "shoal0",
        netns_prefix: str = "shoal-t-",
        veth_prefix: str = "vt",
        netns_dir: Path = Path("/run/netns"),
    ) -> None:
        if len(veth_prefix) + 11 > 15 or len(bridge) > 15:
            raise InvalidArgument("interface names are limited to 15 characters")
        self.state_dir = Path(state_dir)
        self.bridge = bridge
        self.netns_prefix = netns_prefix
        self.veth_prefix = veth_prefix
        self.netns_dir = netns_dir
        self._tasks: dict[str, _Task] = {}
        self._host_mntns = nsutil.host_ns_path("mnt")
        # shims are forked by one zygote per runtime (see zygote.py), started on first use
        self._zygote = ShimZygote({"PYTHONPATH": _PACKAGE_ROOT, "PATH": DEFAULT_PATH})
        # awaited with the task id once its netns is plumbed, before its program runs (the
        # node's service networks and DNS: interfaces and 127.0.0.11 exist from the start)
        self.netns_ready: Callable[[str], Awaitable[None]] | None = None

    # -- names and files ----------------------------------------------------------------
    def _files(self, task_id: str) -> TaskFiles:
        if not task_id or "/" in task_id or task_id.startswith("."):
            raise InvalidArgument(f"invalid task id {task_id!r}")
        return TaskFiles(self.state_dir / task_id)

    def netns_name(self, task_id: str) -> str:
        return f"{self.netns_prefix}{task_id[:12]}"

    def veth_name(self, task_id: str) -> str:
        return f"{self.veth_prefix}{task_id[:11]}"

    def log_path(self, task_id: str) -> Path:
        return self._files(task_id).log

    # -- node network ------------------------------------------------------------------
    async def ensure_node_network(self, gateway: ipaddress.IPv4Interface) -> None:
        root = nsutil.host_ns_path("net")
        check_not_root_netns(
            nsutil.ns_inode("/proc/self/ns/net"),
            nsutil.ns_inode(root) if root else None,
            os.environ.get("SHOAL_ALLOW_ROOT_NETNS") == "1",
        )
        try:
            await netsetup.ensure_bridge(self.bridge, gateway)
            netsetup.set_sysctl("net.ipv4.ip_forward", "1")
            netsetup.set_sysctl("net.ipv4.conf.all.route_localnet", "1")
            # With br_netfilter loaded, frames between two ports of the node bridge pass the
            # nftables hooks; a task reaching a published port that DNATs back onto the same
            # bridge then loses its SYN. The mesh DNATs at L3 only, so bridged frames skip it.
            for family in ("iptables", "ip6tables", "arptables"):
                sysctl = f"net.bridge.bridge-nf-call-{family}"
                if Path("/proc/sys", *sysctl.split(".")).exists():
                    netsetup.set_sysctl(sysctl, "0")
        except (OSError, netsetup.NetlinkError) as exc:
            raise ShoalError(f"setting up bridge {self.bridge} failed: {exc}") from exc
        log.info("node network: bridge %s at %s", self.bridge, gateway)
        self._zygote.prestart()  # warm before the first task (ready when the node is)

    # -- start -------------------------------------------------------------------------
    async def start(self, cfg: TaskConfig) -> int:
        files = self._files(cfg.task_id)
        if not cfg.argv:
            raise TaskStartError("starting container failed: no command specified")
        path_var = cfg.env.get("PATH") or os.environ.get("PATH") or DEFAULT_PATH
        program = resolve_program(cfg.argv[0], path_var, cfg.workdir)  # before creating
        if cfg.workdir and not os.path.isdir(cfg.workdir):
            raise TaskStartError(
                f'starting container failed: chdir to cwd ("{cfg.workdir}") set in '
                "config.json failed: no such file or directory"
            )
        if files.meta.exists():
            if self._alive(files):
                raise TaskStartError(f"starting container failed: task {cfg.task_id} exists")
            await self.purge(cfg.task_id)
        netns_path = str(self.netns_dir / self.netns_name(cfg.task_id))
        if os.path.lexists(netns_path):  # another task's (ids sharing 12 chars): not ours
            raise TaskStartError(f"starting container failed: {netns_path} exists")
        began = time.monotonic()
        made: set[str] = set()
        phases: dict[str, float] = {}
        try:
            pid = await self._start(cfg, files, program, made, phases)
        except BaseException as exc:
            await self._undo_start(cfg.task_id, made)
            if isinstance(exc, TaskStartError):
                raise
            if isinstance(exc, ShimGone | OSError | netsetup.NetlinkError | TimeoutError):
                raise TaskStartError(f"starting container failed: {exc}") from exc
            raise
        log.info(
            "task %s: started pid %d at %s in %.1f ms (%s)",
            cfg.task_id,
            pid,
            cfg.address,
            (time.monotonic() - began) * 1e3,
            ", ".join(f"{name} {ms:.0f}" for name, ms in phases.items()),
        )
        return pid

    async def _start(
        self, cfg: TaskConfig, files: TaskFiles, program: str, made: set[str],
        phases: dict[str, float],
    ) -> int:  # fmt: skip
        """Start the task, adding to `made` what exists only because of this call, and to
        `phases` how long each step took (ms, for the log)."""
        mark = time.monotonic()

        def phase(name: str) -> None:
            nonlocal mark
            now = time.monotonic()
            phases[name] = (now - mark) * 1e3
            mark = now

        files.root.mkdir(parents=True, mode=0o700)
        made.add("dir")
        netns_path = str(self.netns_dir / self.netns_name(cfg.task_id))
        write_json_atomic(
            files.meta,
            {
                "task_id": cfg.task_id,
                "address": str(cfg.address),
                "gateway": str(cfg.gateway),
                "netns": netns_path,
                "veth": self.veth_name(cfg.task_id),
                "bridge": self.bridge,
            },
        )
        write_json_atomic(
            files.config,
            {
                "path": program,
                "argv": cfg.argv,
                "env": program_env(cfg.env, cfg.hostname),
                "cwd": cfg.workdir or "/",
                "hostname": cfg.hostname,
                "netns_path": netns_path,
                "host_mntns": self._host_mntns,
            },
            mode=0o600,
        )
        phase("files")
        shim = await self._spawn_shim(files)
        phase("shim")
        to_shim, from_shim = shim.talk
        self._tasks[cfg.task_id] = _Task(self._watch(cfg.task_id, shim.ref), shim.ref)
        talk = Handshake(from_shim, to_shim)
        try:
            await self._expect(talk, "netns")
            phase("netns")
            nsfd = os.open(f"/proc/{shim.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                await netsetup.create_veth(self.bridge, self.veth_name(cfg.task_id), nsfd)
                made.add("veth")
                await netsetup.configure_task_side(nsfd, cfg.address, cfg.gateway)
                if cfg.sysctls:
                    _set_task_sysctls(nsfd, cfg.sysctls)
                # the address may have belonged to an earlier task: drop the bridge's
                # cached MAC for it, or traffic goes to a dead MAC until the entry expires
                await netsetup.forget_neighbour(self.bridge, cfg.address.ip)
            finally:
                os.close(nsfd)
            phase("veth")
            if self.netns_ready is not None:
                await self.netns_ready(cfg.task_id)
                phase("networks")
            talk.send("go")
            words = await self._expect(talk, "pid")
            phase("exec")
        finally:
            os.close(to_shim)
            os.close(from_shim)
        return int(words[0])

    async def _spawn_shim(self, files: TaskFiles) -> _Shim:
        """A shim for the task, forked by the zygote, its handshake pipes open here."""
        shim_in, to_shim = os.pipe2(os.O_CLOEXEC)
        from_shim, shim_out = os.pipe2(os.O_CLOEXEC)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            err = os.open(files.shim_log, flags, 0o644)
            try:
                pid = await self._zygote.spawn(str(files.root), shim_in, shim_out, err)
            finally:
                os.close(err)
        except BaseException:
            os.close(to_shim)
            os.close(from_shim)
            raise
        finally:
            os.close(shim_in)
            os.close(shim_out)
        ref = ProcRef.of(pid)
        if ref is not None:
            ref.save(files.shim)
        return _Shim(pid, ref, (to_shim, from_shim))

    def close(self) -> None:
        """End the shim zygote (the running shims and their programs stay)."""
        self._zygote.close()

    @staticmethod
    async def _expect(talk: Handshake, word: str) -> list[str]:
        words = (await talk.line(_HANDSHAKE_TIMEOUT)).split(" ", 1)
        if words[0] == word:
            return " ".join(words[1:]).split()
        if words[0] == "error" and len(words) > 1:
            raise TaskStartError(f"starting container failed: {words[1]}")
        raise ShimGone(f"unexpected word from the shim: {' '.join(words)!r}")

    async def _undo_start(self, task_id: str, made: set[str]) -> None:
        """Remove what a failed start made, and only that (a name may be another task's)."""
        files = self._files(task_id)
        known = self._tasks.pop(task_id, None)
        try:
            if known is not None:
                if known.shim is not None and known.shim.alive():
                    self._signal_program(task_id, signal.SIGKILL)
                    with contextlib.suppress(ProcessLookupError):  # mid-handshake: nothing
                        os.kill(known.shim.pid, signal.SIGKILL)  # of the task's to wait for
                    await asyncio.wait({known.watch}, timeout=_KILL_WAIT)
                known.watch.cancel()
            if "veth" in made:
                await netsetup.delete_link(self.veth_name(task_id))
            # the netns path did not exist before this start: a pin there is this start's
            netns = str(self.netns_dir / self.netns_name(task_id))
            await self._unpin(netns)
        except Exception:
            log.exception("task %s: cleaning up a failed start failed", task_id)
        if "dir" in made:
            shutil.rmtree(files.root, ignore_errors=True)

    # -- watching ------------------------------------------------------------------------
    def _watch(self, task_id: str, shim: ProcRef | None) -> asyncio.Task[ExitStatus]:
        return asyncio.create_task(self._wait_exit(task_id, shim), name=f"watch-{task_id}")

    async def _wait_exit(self, task_id: str, shim: ProcRef | None) -> ExitStatus:
        files = self._files(task_id)
        if shim is not None:
            await wait_gone(shim)  # the zygote, or init, reaps it
        status = read_exit(files.exit)
        if status is None:
            program = ProcRef.load(files.pid)
            if program is not None and program.alive():
                log.warning("task %s: shim gone, watching program %d", task_id, program.pid)
                await wait_gone(program)
            status = read_exit(files.exit) or UNKNOWN
        log.info("task %s: %s", task_id, status.message)
        return status

    def _alive(self, files: TaskFiles) -> bool:
        return any(
            ref is not None and ref.alive()
            for ref in (ProcRef.load(files.shim), ProcRef.load(files.pid))
        )

    def _ensure_watch(self, task_id: str) -> asyncio.Task[ExitStatus] | None:
        known = self._tasks.get(task_id)
        if known is not None:
            return known.watch
        files = self._files(task_id)
        if not self._alive(files):
            return None
        shim = ProcRef.load(files.shim)
        watch = self._watch(task_id, shim if shim is not None and shim.alive() else None)
        self._tasks[task_id] = _Task(watch)
        return watch

    async def wait(self, task_id: str) -> ExitStatus:
        watch = self._ensure_watch(task_id)
        if watch is None:
            return read_exit(self._files(task_id).exit) or UNKNOWN
        return await asyncio.shield(watch)

    def existing(self) -> list[TaskRecord]:
        records: list[TaskRecord] = []
        if not self.state_dir.is_dir():
            return records
        for entry in sorted(self.state_dir.iterdir()):
            meta = read_json(TaskFiles(entry).meta)
            if not isinstance(meta, dict):
                continue
            with contextlib.suppress(KeyError, ValueError):
                address = ipaddress.IPv4Interface(meta["address"])
                records.append(TaskRecord(entry.name, address, self._alive(TaskFiles(entry))))
        return records

    async def adopt(self, task_id: str) -> bool:
        watch = self._ensure_watch(task_id)
        return watch is not None and not watch.done()

    # -- stopping and cleaning up --------------------------------------------------------
    def _signal_program(self, task_id: str, sig: int) -> bool:
        """Signal the program's process group if its leader is alive (so the group id
        cannot have been recycled). Leftovers of a dead leader are the shim's to kill."""
        program = ProcRef.load(self._files(task_id).pid)
        if program is None or not program.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(program.pid, sig)
        return True

    async def stop(self, task_id: str, grace: float) -> None:
        watch = self._ensure_watch(task_id)
        if watch is None or watch.done():
            return
        self._signal_program(task_id, signal.SIGTERM)
        done, _ = await asyncio.wait({watch}, timeout=max(grace, 0.0))
        if done:
            return
        log.info("task %s: still running %.1fs after SIGTERM, killing it", task_id, grace)
        await self._kill(task_id, watch)

    async def _kill(self, task_id: str, watch: asyncio.Task[ExitStatus]) -> None:
        self._signal_program(task_id, signal.SIGKILL)
        done, _ = await asyncio.wait({watch}, timeout=_KILL_WAIT)
        if done:
            return
        shim = ProcRef.load(self._files(task_id).shim)
        if shim is not None and shim.alive():
            log.warning("task %s: shim %d does not finish, killing it", task_id, shim.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(shim.pid, signal.SIGKILL)
        await asyncio.wait({watch}, timeout=_KILL_WAIT)

    async def remove(self, task_id: str) -> None:
        files = self._files(task_id)
        watch = self._ensure_watch(task_id)
        if watch is not None and not watch.done():
            await self._kill(task_id, watch)
        known = self._tasks.pop(task_id, None)
        if known is not None:
            known.watch.cancel()
        meta = read_json(files.meta)
        meta = meta if isinstance(meta, dict) else {}
        try:
            await netsetup.delete_link(meta.get("veth") or self.veth_name(task_id))
        except (OSError, netsetup.NetlinkError) as exc:
            raise ShoalError(f"removing the veth of task {task_id} failed: {exc}") from exc
        netns = meta.get("netns") or str(self.netns_dir / self.netns_name(task_id))
        await self._unpin(netns)
        for path in files.runtime_files():
            path.unlink(missing_ok=True)

    async def _unpin(self, netns_path: str) -> None:
        """Remove a task netns pin made by the shim (`nsutil.pin_new_netns`); idempotent.
        A pin in the host mount namespace is removed by a child of the zygote: only a
        single-threaded process may enter that namespace, and the daemon has threads."""
        if not os.path.lexists(netns_path):
            return
        try:
            host = self._host_mntns
            if host is None or nsutil.ns_inode(host) == nsutil.ns_inode("/proc/self/ns/mnt"):
                nsutil.unpin_netns(netns_path, None)
            else:
                await self._zygote.unpin(netns_path, host)
        except OSError as exc:
            raise ShoalError(f"removing network namespace {netns_path} failed: {exc}") from exc

    def leftovers(self) -> list[str]:
        """Ids of removed tasks whose log and exit status are still on disk (to purge)."""
        if not self.state_dir.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.state_dir.iterdir()
            if not entry.name.startswith(".")
            and not TaskFiles(entry).meta.exists()
            and (TaskFiles(entry).exit.exists() or TaskFiles(entry).log.exists())
        )

    async def purge(self, task_id: str) -> None:
        await self.remove(task_id)
        shutil.rmtree(self._files(task_id).root, ignore_errors=True)
