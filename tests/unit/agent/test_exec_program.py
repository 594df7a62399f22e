"""Program resolution, environment defaults, the root-netns guard, on-disk records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shoal.agent.exec.program import DEFAULT_PATH, TaskStartError, program_env, resolve_program
from shoal.agent.exec.runtime import ExecRuntime, check_not_root_netns
from shoal.agent.exec.taskdir import ProcRef, rfc3339_nano
from shoal.agent.exec.watch import read_exit
from shoal.errors import InvalidArgument, ShoalError


def test_resolves_names_on_path_and_paths_as_is(tmp_path: Path) -> None:
    prog = tmp_path / "bin" / "tool"
    prog.parent.mkdir()
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    assert resolve_program("tool", f"/nonexistent:{prog.parent}", None) == str(prog)
    assert resolve_program(str(prog), "", None) == str(prog)
    assert resolve_program("bin/tool", "", str(tmp_path)) == str(prog)
    with pytest.raises(TaskStartError) as missing:
        resolve_program("nosuchcmd", DEFAULT_PATH, None)
    assert missing.value.message == (
        'starting container failed: exec: "nosuchcmd": executable file not found in $PATH'
    )
    prog.chmod(0o644)
    with pytest.raises(TaskStartError, match="permission denied"):
        resolve_program(str(prog), "", None)
    with pytest.raises(TaskStartError, match="no such file"):
        resolve_program("/no/such/file", "", None)


def test_environment_gets_docker_defaults_only_when_unset() -> None:
    env = program_env({"FOO": "1", "HOME": "/srv"}, "abc123")
    assert env == {"PATH": DEFAULT_PATH, "HOSTNAME": "abc123", "HOME": "/srv", "FOO": "1"}
    assert program_env({"PATH": "/x"}, "h")["PATH"] == "/x"


def test_root_netns_is_refused_unless_allowed() -> None:
    check_not_root_netns(5, 7, allow=False)
    with pytest.raises(ShoalError, match="root network namespace"):
        check_not_root_netns(7, 7, allow=False)
    with pytest.raises(ShoalError):  # cannot tell: refuse
        check_not_root_netns(7, None, allow=False)
    check_not_root_netns(7, 7, allow=True)


def test_names_and_bad_ids(tmp_path: Path) -> None:
    rt = ExecRuntime(tmp_path, netns_prefix="shoal-x-", veth_prefix="vx")
    tid = "0123456789abcdefghijklmno"
    assert rt.netns_name(tid) == "shoal-x-0123456789ab"
    assert rt.veth_name(tid) == "vx0123456789a"
    assert rt.log_path(tid) == tmp_path / tid / "log.jsonl"
    with pytest.raises(InvalidArgument):
        rt.log_path("../etc")
    with pytest.raises(InvalidArgument):
        ExecRuntime(tmp_path, veth_prefix="toolongprefix")
    assert rt.existing() == []


def test_procref_checks_the_start_time(tmp_path: Path) -> None:
    me = ProcRef.of(os.getpid())
    assert me is not None and me.alive()
    assert not ProcRef(me.pid, me.start + 1).alive()
    me.save(tmp_path / "pid")
    assert ProcRef.load(tmp_path / "pid") == me
    assert ProcRef.load(tmp_path / "missing") is None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ref = ProcRef.of(child.pid)
    child.wait()
    assert ref is None or not ref.alive()


def test_exit_records_and_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "exit"
    path.write_text('{"code": 137, "signal": 9, "finished": "x"}')
    assert read_exit(path) is not None and read_exit(path).message == "task killed by signal 9"
    path.write_text('{"code": 1, "signal": null}')
    assert read_exit(path).message == "task exited with code 1"  # type: ignore[union-attr]
    path.write_text("{")
    assert read_exit(path) is None
    assert rfc3339_nano(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


def test_zygote_and_shim_import_only_the_stdlib() -> None:
    # the zygote (which forks every task's shim) must stay small and fast to start (see
    # exec/__init__.py)
    root = Path(__file__).resolve().parents[3]
    code = (
        "import sys, shoal.agent.exec.zygote;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncio','typing','dataclasses','pyroute2','msgspec','shoal','pathlib',"
        "'urllib','ipaddress')))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert eval(out) == [
        "shoal",
        "shoal.agent",
        "shoal.agent.exec",
        "shoal.agent.exec.nsutil",
        "shoal.agent.exec.shim",
        "shoal.agent.exec.taskdir",
        "shoal.agent.exec.zygote",
    ]
