"""cgroup v2 directories of the lab: how a lab host is powered off.

Everything that runs on a lab host (its daemon, the daemon's tasks, `lab exec` commands) is
started inside the host's cgroup: the launcher writes its own pid to `cgroup.procs` before it
execs, so every descendant, including those that call setsid() or double-fork, stays in the
cgroup (or in a child cgroup the daemon makes below it). Powering the host off is then
`cgroup.kill` and waiting until the cgroup is empty: nothing is ever killed by name.

The cgroup2 mount point is read from /proc/mounts (a hybrid machine mounts it at
/sys/fs/cgroup/unified, a pure v2 one at /sys/fs/cgroup).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from shoal.errors import ShoalError, Unavailable

__all__ = [
    "cgroup2_mount",
    "join_argv",
    "kill_cgroup",
    "kill_task_cgroups",
    "make_cgroup",
    "populated",
    "procs",
    "remove_cgroup",
    "sweep_task_cgroups",
]


def cgroup2_mount(mounts: str | None = None) -> Path:
    """The cgroup2 mount point (from /proc/mounts unless `mounts` text is given)."""
    if mounts is None:
        with open("/proc/mounts") as fh:
            mounts = fh.read()
    points = [line.split()[1] for line in mounts.splitlines() if line.split()[2:3] == ["cgroup2"]]
    if "/sys/fs/cgroup" in points:
        return Path("/sys/fs/cgroup")
    if points:
        return Path(points[0])
    raise Unavailable("no cgroup2 file system is mounted: the lab needs cgroup v2 (cgroup.kill)")


def make_cgroup(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def join_argv(cgroup: Path, argv: list[str]) -> list[str]:
    """`argv` wrapped so that it runs in `cgroup`: the shell moves itself there, then execs.

    A shell rather than `preexec_fn`, which is unsafe in a threaded process such as pytest.
    """
    script = 'echo $$ > "$0" && exec "$@"'
    return ["sh", "-c", script, str(cgroup / "cgroup.procs"), *argv]


def procs(path: Path) -> list[int]:
    """Pids in `path` and every cgroup below it; [] if it does not exist."""
    pids: list[int] = []
    if not path.is_dir():
        return pids
    for root, _dirs, _files in os.walk(path):
        try:
            text = (Path(root) / "cgroup.procs").read_text()
        except OSError:
            continue
        pids.extend(int(word) for word in text.split())
    return pids


def populated(path: Path) -> bool:
    return bool(procs(path))


def kill_cgroup(path: Path, timeout: float = 10.0, reap: Callable[[], None] | None = None) -> None:
    """Kill every process in `path` and below, and wait until they are gone.

    `reap` is called while waiting, so that a caller whose children are being killed can
    wait() for them (a zombie child of ours would otherwise be waited for in vain).
    """
    if not path.is_dir():
        return
    deadline = time.monotonic() + timeout
    while True:
        left = procs(path)
        if not left:
            return
        _signal_all(path, left)
        if reap is not None:
            reap()
        if time.monotonic() > deadline:
            raise ShoalError(f"processes {left} of cgroup {path} did not die in {timeout:.0f}s")
        time.sleep(0.02)


def _signal_all(path: Path, pids: list[int]) -> None:
    kill_file = path / "cgroup.kill"
    if kill_file.exists():
        kill_file.write_text("1")
        return
    for pid in pids:  # kernels before 5.14: the pids the cgroup lists, one by one
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_cgroup(path: Path) -> None:
    """rmdir `path` and the cgroups below it, deepest first; it must be empty of processes."""
    if not path.is_dir():
        return
    for root, dirs, _files in os.walk(path, topdown=False):
        for name in dirs:
            _rmdir(Path(root) / name)
    _rmdir(path)


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass


def kill_task_cgroups(
    task_ids: Iterable[str], base: Path = Path("/sys/fs/cgroup"), parent: str = "shoal"
) -> None:
    """Kill the containers of `task_ids` (runc's `/<parent>/<task>` in every hierarchy, v1
    included) and wait until they are gone. runc's processes are not in the lab host's
    cgroup: a daemon that died without stopping its tasks (killed, or too loaded to stop
    them in time) leaves them running in namespaces of their own. Only the given tasks: the
    ids come from the lab's own data roots, so another lab's containers are not touched."""
    ids = set(task_ids)
    # cgroup v1 and hybrid machines: a hierarchy per directory of `base`; pure v2: `base`
    hierarchies = [base, *base.iterdir()] if ids and base.is_dir() else []
    for hierarchy in hierarchies:
        for task in ids:
            kill_cgroup(hierarchy / parent / task)


def sweep_task_cgroups(base: Path = Path("/sys/fs/cgroup"), parent: str = "shoal") -> None:
    """The containers' cgroups (runc's `/<parent>/<task>` in every hierarchy, v1 included)
    that no process uses any more, then `parent` once it is empty. A daemon killed with its
    lab never removes its tasks' cgroups; a cgroup still holding a process is left alone
    (rmdir refuses it), so another lab's running containers keep theirs."""
    for hierarchy in (base.iterdir() if base.is_dir() else ()):
        top = hierarchy / parent
        if not top.is_dir():
            continue
        for task in top.iterdir():
            if task.is_dir():
                with contextlib.suppress(OSError):  # busy: a process is still in it
                    task.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
