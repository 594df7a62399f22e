"""sweep_task_cgroups: containers' cgroups left by killed daemons go, busy ones stay."""

from __future__ import annotations

from pathlib import Path

from shoal.lab.cgroups import sweep_task_cgroups


def test_unused_task_cgroups_and_their_parent_go_busy_ones_stay(tmp_path: Path) -> None:
    for hierarchy in ("blkio", "cpu", "cpuacct"):
        (tmp_path / hierarchy / "shoal" / "task1").mkdir(parents=True)
    busy = tmp_path / "memory" / "shoal" / "task2"
    busy.mkdir(parents=True)
    (busy / "cgroup.procs").write_text("123\n")  # rmdir refuses it, as the kernel does a used one
    (tmp_path / "pids" / "other").mkdir(parents=True)

    sweep_task_cgroups(tmp_path)

    for hierarchy in ("blkio", "cpu", "cpuacct"):
        assert not (tmp_path / hierarchy / "shoal").exists()
    assert busy.is_dir()
    assert (tmp_path / "pids" / "other").is_dir()
