"""runc's config.json for one task, by Docker's rules (pure: no I/O, no clock).

Docker is the oracle: `Command` replaces the image's Entrypoint and clears its Cmd, `Args`
replaces Cmd; the environment is `PATH` (Docker's default unless the image sets it), then
the image's, then the service's (later wins by key); Docker's default capabilities with
`CapabilityAdd`/`CapabilityDrop` (`ALL` and names with or without `CAP_`), its masked and
read-only /proc and /sys paths and its /dev, /dev/shm, /dev/mqueue, /dev/pts mounts.
`Init`: the node's init binary (tini) bind-mounted read-only at /sbin/docker-init and put
in front of the args with `--`, as dockerd does. dockerd's sysctls for a container with its
own network namespace (`net.ipv4.ip_unprivileged_port_start=0`, so `--user app` may still
listen on port 80, and `net.ipv4.ping_group_range`), the service's `Sysctls` over them; the
`net.*` ones go to the task's netns (`netns_sysctls`), the others into config.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shoal.agent.exec.program import DEFAULT_PATH, TaskStartError
from shoal.agent.oci.users import ProcessUser
from shoal.api.container import Resources, Ulimit

__all__ = [
    "DEFAULT_CAPABILITIES",
    "INIT_PATH",
    "SpecInput",
    "build_config",
    "capabilities",
    "merge_env",
    "netns_sysctls",
    "process_args",
    "stop_signal",
]

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip
ALL_CAPABILITIES = (
    *DEFAULT_CAPABILITIES,
    "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE", "CAP_AUDIT_CONTROL", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
INIT_PATH = "/sbin/docker-init"  # where dockerd mounts its init in a container
# dockerd's (20.10+) sysctls for a container with its own network namespace, below the
# service's own: any user may bind ports under 1024 and open ICMP echo sockets
DEFAULT_SYSCTLS = {
    "net.ipv4.ip_unprivileged_port_start": "0",
    "net.ipv4.ping_group_range": "0 2147483647",
}
CPU_PERIOD = 100_000  # microseconds, Docker's default
SIGTERM = 15
# Linux signal numbers (x86/arm), as runc and Docker's `--stop-signal` know them
SIGNALS = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
    "SIGIOT": 6, "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11,
    "SIGUSR2": 12, "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGSTKFLT": 16,
    "SIGCHLD": 17, "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22,
    "SIGURG": 23, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27,
    "SIGWINCH": 28, "SIGIO": 29, "SIGPOLL": 29, "SIGPWR": 30, "SIGSYS": 31,
}  # fmt: skip


@dataclass(frozen=True)
class SpecInput:
    """Everything config.json depends on, already read from disk by the caller."""

    task_id: str
    hostname: str
    argv: list[str]
    env: list[str]
    cwd: str
    user: ProcessUser
    netns_path: str
    cgroups_path: str
    rootfs: str = "rootfs"
    read_only: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    ulimits: list[Ulimit] = field(default_factory=list)
    oom_score_adj: int = 0
    limits: Resources | None = None
    mounts: list[dict[str, Any]] = field(default_factory=list)  # OCI mounts, after defaults
    etc_files: dict[str, str] = field(default_factory=dict)  # /etc/hosts -> bundle path
    init_binary: str = ""  # the host's init (tini) to run as pid 1 (`--init`), or none


def process_args(
    entrypoint: list[str] | None,
    cmd: list[str] | None,
    command: list[str] | None,
    args: list[str] | None,
) -> list[str]:
    """Docker: Command replaces Entrypoint and clears Cmd; Args replaces Cmd."""
    first = list(command) if command else list(entrypoint or [])
    rest = list(args) if args else ([] if command else list(cmd or []))
    argv = first + rest
    if not argv:
        raise TaskStartError("starting container failed: no command specified")
    return argv


def merge_env(
    image_env: list[str] | None, service_env: list[str] | None, extra: dict[str, str]
) -> list[str]:
    """PATH default, then image, then service, then `extra`; one entry per key, in order."""
    merged: dict[str, str] = {}
    for entry in [f"PATH={DEFAULT_PATH}", *(image_env or []), *(service_env or [])]:
        key, sep, value = entry.partition("=")
        if key:
            merged[key] = value if sep else merged.get(key, "")
    merged.update({k: v for k, v in extra.items() if k not in merged})
    return [f"{k}={v}" for k, v in merged.items()]


def _cap_name(name: str) -> str:
    upper = name.strip().upper()
    return upper if upper == "ALL" or upper.startswith("CAP_") else f"CAP_{upper}"


def capabilities(add: list[str], drop: list[str]) -> list[str]:
    """Docker's defaults, plus `add`, minus `drop`; `ALL` on either side."""
    adds = {_cap_name(c) for c in add}
    drops = {_cap_name(c) for c in drop}
    for cap in (adds | drops) - {"ALL"}:
        if cap not in ALL_CAPABILITIES:
            raise TaskStartError(f"starting container failed: unknown capability: {cap!r}")
    base = list(ALL_CAPABILITIES if "ALL" in adds else DEFAULT_CAPABILITIES)
    base += sorted(c for c in adds - {"ALL"} if c not in base)
    if "ALL" in drops:
        return sorted(c for c in adds - {"ALL"}) if "ALL" not in adds else base
    return [c for c in base if c not in drops]


def stop_signal(service: str, image: str) -> int:
    """The stop signal: service's, else image's, else SIGTERM (names with or without SIG)."""
    for name in (service, image):
        if not name:
            continue
        if name.isdigit():
            return int(name)
        upper = name.upper()
        upper = upper if upper.startswith("SIG") else f"SIG{upper}"
        if upper not in SIGNALS:
            raise TaskStartError(f"invalid signal: {name}")
        return SIGNALS[upper]
    return SIGTERM


def _default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
    ]  # fmt: skip


def _resources(limits: Resources | None) -> dict[str, Any]:
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if limits is None:
        return out
    if limits.memory_bytes:
        out["memory"] = {"limit": limits.memory_bytes}
    if limits.nano_cpus:
        out["cpu"] = {"quota": limits.nano_cpus * CPU_PERIOD // 1_000_000_000, "period": CPU_PERIOD}
    if limits.pids:
        out["pids"] = {"limit": limits.pids}
    return out


def _process(inp: SpecInput) -> dict[str, Any]:
    caps = capabilities(inp.cap_add, inp.cap_drop)
    user: dict[str, Any] = {"uid": inp.user.uid, "gid": inp.user.gid}
    if inp.user.additional_gids:
        user["additionalGids"] = list(inp.user.additional_gids)
    env = list(inp.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={inp.user.home if inp.user.uid else '/root'}")
    process: dict[str, Any] = {
        "terminal": False,
        "user": user,
        "args": inp.argv,
        "env": env,
        "cwd": inp.cwd or "/",
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": False,
    }
    if inp.oom_score_adj:
        process["oomScoreAdj"] = inp.oom_score_adj
    if inp.ulimits:
        process["rlimits"] = [
            {"type": f"RLIMIT_{u.name.upper()}", "soft": u.soft, "hard": u.hard}
            for u in inp.ulimits
        ]
    return process


def netns_sysctls(inp: SpecInput) -> dict[str, str]:
    """The `net.*` sysctls, dockerd's defaults under the service's: written by the runtime
    into the task's netns before `runc run`, which runs inside that netns and so refuses
    any `net.*` sysctl of config.json ("not allowed in host network namespace")."""
    return {**DEFAULT_SYSCTLS, **{k: v for k, v in inp.sysctls.items() if k.startswith("net.")}}


def build_config(inp: SpecInput) -> dict[str, Any]:
    """The whole config.json (OCI runtime spec 1.0.2) for `runc run`."""
    mounts = _default_mounts()
    for dest, source in sorted(inp.etc_files.items()):
        options = ["rbind", "rprivate"] + (["ro"] if inp.read_only else [])
        mounts.append({"destination": dest, "type": "bind", "source": source, "options": options})
    mounts += inp.mounts
    argv = inp.argv
    if inp.init_binary:
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": inp.init_binary,
                       "options": ["rbind", "ro"]})  # fmt: skip
        argv = [INIT_PATH, "--", *argv]
    env = [f"HOSTNAME={inp.hostname}", *(e for e in inp.env if not e.startswith("HOSTNAME="))]
    process = _process(SpecInput(**{**inp.__dict__, "env": env, "argv": argv}))
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inp.rootfs, "readonly": inp.read_only},
        "hostname": inp.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "mount"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "network", "path": inp.netns_path},
            ],
            "cgroupsPath": inp.cgroups_path,
            "resources": _resources(inp.limits),
            "sysctl": {k: v for k, v in inp.sysctls.items() if not k.startswith("net.")},
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
