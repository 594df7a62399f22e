"""The on-disk state of one exec task, shared by the runtime and the shim (stdlib only).

<state_dir>/<task_id>/
    meta.json    runtime, first thing at start: address, netns, veth (what to clean up)
    config.json  runtime -> shim: argv, env, cwd, hostname, netns path (0600: env is secret)
    shim.json    runtime, right after spawning: the shim's pid and start time
    netns        shim: where the netns pin lives ("host" or "local" mount namespace)
    pid          shim, before the task's program runs: its pid and start time
    exit         shim, after the program exited: {"code", "signal", "finished"}
    log.jsonl    shim: one {"time", "stream", "log"} object per output line
    shim.log     the shim's own stderr

Stdlib only, and not even `typing`/`dataclasses` or `pathlib` (which brings `re`,
`urllib.parse`, `ipaddress`: a fifth of the shim's start): the shim imports this and
starts with every task. The daemon's side names the files through `TaskFiles` (paths);
the shim joins the names below to its task directory (strings); both read and write
them with the helpers here, which take either.
Every file but the log is written atomically (temp file + rename). A pid is never trusted
alone: `ProcRef.alive` also compares the start time in /proc/<pid>/stat, so a recycled pid
is not mistaken for the task.
"""

from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False  # mypy honours a constant of this name; `typing` costs the shim
if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CONFIG",
    "EXIT",
    "LOG",
    "NETNS",
    "PID",
    "ProcRef",
    "TaskFiles",
    "proc_start_time",
    "read_json",
    "rfc3339_nano",
    "write_json_atomic",
]


META, CONFIG, SHIM, NETNS, PID, EXIT, LOG = (
    "meta.json", "config.json", "shim.json", "netns", "pid", "exit", "log.jsonl"
)
HEALTH = "health"  # the task's health as its controller last saw it: starting|healthy|unhealthy


class TaskFiles:
    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def meta(self) -> Path:
        return self.root / META

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def shim(self) -> Path:
        return self.root / SHIM

    @property
    def netns(self) -> Path:
        return self.root / NETNS

    @property
    def pid(self) -> Path:
        return self.root / PID

    @property
    def exit(self) -> Path:
        return self.root / EXIT

    @property
    def log(self) -> Path:
        return self.root / LOG

    @property
    def shim_log(self) -> Path:
        return self.root / "shim.log"

    @property
    def health(self) -> Path:
        return self.root / HEALTH

    def runtime_files(self) -> list[Path]:
        """What `remove` deletes: everything but the log and the exit status."""
        return [self.meta, self.config, self.shim, self.netns, self.pid, self.shim_log]


def write_json_atomic(path: Path | str, obj: object, mode: int = 0o644) -> None:
    head, name = os.path.split(os.fspath(path))
    tmp = os.path.join(head, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh)
    os.replace(tmp, path)


def read_json(path: Path | str) -> object:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.loads(fh.read())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode(errors="replace")
    except OSError:
        return None
    # comm may hold spaces and parentheses: fields resume after the last ')'
    return raw[raw.rfind(")") + 2 :].split()


def proc_start_time(pid: int) -> int | None:
    """Start time of a live (non-zombie) process in clock ticks since boot, else None."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


class ProcRef:
    """A process named by pid and start time (pids are recycled). Immutable."""

    __slots__ = ("pid", "start")

    def __init__(self, pid: int, start: int) -> None:
        self.pid = pid
        self.start = start

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProcRef) and (self.pid, self.start) == (other.pid, other.start)

    def __hash__(self) -> int:
        return hash((self.pid, self.start))

    def __repr__(self) -> str:
        return f"ProcRef(pid={self.pid}, start={self.start})"

    @classmethod
    def of(cls, pid: int) -> ProcRef | None:
        start = proc_start_time(pid)
        return None if start is None else cls(pid, start)

    @classmethod
    def load(cls, path: Path | str) -> ProcRef | None:
        data = read_json(path)
        if not isinstance(data, dict):
            return None
        try:
            return cls(int(data["pid"]), int(data["start"]))
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, path: Path | str) -> None:
        write_json_atomic(path, {"pid": self.pid, "start": self.start})

    def alive(self) -> bool:
        return proc_start_time(self.pid) == self.start


def rfc3339_nano(ns: int) -> str:
    """Docker's log timestamp: UTC with nanoseconds, e.g. 2026-01-01T00:00:00.000000001Z."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"
