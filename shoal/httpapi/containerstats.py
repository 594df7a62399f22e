"""`docker stats` from a task container's cgroup (v1 controllers or the v2 unified tree).

Docker's shape: memory_stats{usage,limit,stats}, cpu_stats/precpu_stats{cpu_usage,
system_cpu_usage,online_cpus}, pids_stats{current,limit}. An unlimited memory cgroup reports
the host's memory as its limit, as dockerd does.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from shoal.api.timefmt import from_epoch
from shoal.httpapi.taskcontainers import ContainerView

__all__ = ["CGROUP_ROOT", "stats_of"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
_TICKS = os.sysconf("SC_CLK_TCK")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _read_kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _host_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _system_cpu_ns() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:8]
    return sum(int(f) for f in fields) * 1_000_000_000 // _TICKS


def _unified(root: Path) -> bool:
    return (root / "cgroup.controllers").exists()


def _sample(rel: str, root: Path) -> dict[str, Any]:
    """One reading: memory, cpu and pids of the cgroup at `rel` below the hierarchies."""
    rel = rel.strip("/")
    if _unified(root):
        base = root / rel
        mem, mem_limit = _read_int(base / "memory.current"), _read_int(base / "memory.max")
        mem_stat = _read_kv(base / "memory.stat")
        cpu_total = _read_kv(base / "cpu.stat").get("usage_usec", 0) * 1000
        pids, pids_max = _read_int(base / "pids.current"), _read_int(base / "pids.max")
    else:
        mem_dir, pids_dir = root / "memory" / rel, root / "pids" / rel
        cpu_dir = root / "cpuacct" / rel
        mem = _read_int(mem_dir / "memory.usage_in_bytes")
        mem_limit = _read_int(mem_dir / "memory.limit_in_bytes")
        mem_stat = _read_kv(mem_dir / "memory.stat")
        cpu_total = _read_int(cpu_dir / "cpuacct.usage") or 0
        pids, pids_max = _read_int(pids_dir / "pids.current"), _read_int(pids_dir / "pids.max")
    host = _host_memory()
    limit = min(mem_limit, host) if mem_limit else host
    return {
        "memory_stats": {"usage": mem or 0, "limit": limit, "stats": mem_stat},
        "cpu_stats": {
            "cpu_usage": {"total_usage": cpu_total, "usage_in_kernelmode": 0,
                          "usage_in_usermode": 0},
            "system_cpu_usage": _system_cpu_ns(),
            "online_cpus": os.cpu_count() or 1,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "pids_stats": {"current": pids or 0, **({"limit": pids_max} if pids_max else {})},
    }


_EMPTY_CPU: dict[str, Any] = {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}


async def stats_of(
    view: ContainerView, one_shot: bool, interval: float = 0.5, root: Path = CGROUP_ROOT
) -> dict[str, Any]:
    """A stats reading; unless `one_shot`, with a previous one `interval` earlier."""
    pre_read, before = "0001-01-01T00:00:00Z", None
    if not one_shot:
        pre_read, before = from_epoch(time.time()), _sample(view.cgroup_path, root)
        await asyncio.sleep(interval)
    now = _sample(view.cgroup_path, root)
    return {
        "name": "/" + view.name,
        "id": view.id,
        "read": from_epoch(time.time()),
        "preread": pre_read,
        "num_procs": 0,
        "blkio_stats": {},
        "storage_stats": {},
        "networks": {},
        **now,
        "precpu_stats": before["cpu_stats"] if before else _EMPTY_CPU,
    }
