from pathlib import Path

from shoal.agent.oci.runtime import _remove_cgroup


def test_the_task_cgroup_and_the_empty_parent_go_a_busy_parent_stays(tmp_path: Path) -> None:
    for hierarchy in ("memory", "pids"):
        (tmp_path / hierarchy / "shoal" / "t1").mkdir(parents=True)
    (tmp_path / "pids" / "shoal" / "t2").mkdir()  # another task still has its cgroup
    _remove_cgroup("/shoal/t1", base=tmp_path)
    assert not (tmp_path / "memory" / "shoal").exists()
    assert not (tmp_path / "pids" / "shoal" / "t1").exists()
    assert (tmp_path / "pids" / "shoal" / "t2").is_dir()
