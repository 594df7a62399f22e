"""kill_task_cgroups on real cgroups: the named tasks' processes die, another task's stay.

What `lab down` relies on to stop containers whose daemon died without stopping them (476
were left by a 1,000-replica run whose daemons could not keep up).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.lab.cgroups import cgroup2_mount, kill_cgroup, kill_task_cgroups, remove_cgroup

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)")


@pytest.fixture
def parent() -> Iterator[tuple[Path, str]]:
    base = cgroup2_mount()
    name = f"shoal-kt-{os.getpid()}"
    yield base, name
    kill_cgroup(base / name)  # whatever a failed test left, by the pids the cgroup lists
    remove_cgroup(base / name)


def _sleeper_in(cgroup: Path) -> subprocess.Popen[bytes]:
    cgroup.mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "600"])
    (cgroup / "cgroup.procs").write_text(str(proc.pid))
    return proc


def test_the_named_tasks_die_and_another_tasks_processes_stay(parent: tuple[Path, str]) -> None:
    base, name = parent
    doomed = _sleeper_in(base / name / "task-a")
    kept = _sleeper_in(base / name / "task-b")
    try:
        kill_task_cgroups(["task-a", "task-gone"], base=base, parent=name)

        assert doomed.wait(timeout=10) == -9
        assert kept.poll() is None
    finally:
        for proc in (doomed, kept):
            proc.kill()
            proc.wait()
