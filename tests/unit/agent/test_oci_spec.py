"""The runc spec builder against Docker's rules (entrypoint/cmd, env, user, caps, limits)."""

from __future__ import annotations

import signal

import pytest

from shoal.agent.exec.program import DEFAULT_PATH, TaskStartError
from shoal.agent.oci.prepare import is_exec_task
from shoal.agent.oci.spec import (
    DEFAULT_CAPABILITIES,
    SpecInput,
    build_config,
    capabilities,
    merge_env,
    netns_sysctls,
    process_args,
    stop_signal,
)
from shoal.agent.oci.users import ProcessUser, UnknownUser, numeric_user, resolve_user
from shoal.api.container import Resources, Ulimit
from shoal.api.types import ContainerSpec

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nstaff:x:50:app\n"


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "command", "args", "argv"),
    [
        (None, ["sh"], None, None, ["sh"]),
        (["/ep"], ["a"], None, None, ["/ep", "a"]),
        (["/ep"], ["a"], None, ["b"], ["/ep", "b"]),
        (["/ep"], ["a"], ["/x"], None, ["/x"]),  # Command replaces Entrypoint, clears Cmd
        (["/ep"], ["a"], ["/x"], ["y"], ["/x", "y"]),
        (None, ["httpd"], None, ["sh", "-c", "true"], ["sh", "-c", "true"]),
    ],
)
def test_docker_entrypoint_cmd_rules(
    entrypoint: list[str] | None,
    cmd: list[str] | None,
    command: list[str] | None,
    args: list[str] | None,
    argv: list[str],
) -> None:
    assert process_args(entrypoint, cmd, command, args) == argv


def test_nothing_to_run_is_docker_error() -> None:
    with pytest.raises(TaskStartError, match="no command specified"):
        process_args(None, None, None, None)


def test_env_default_path_image_then_service() -> None:
    env = merge_env(["A=1", "PATH=/img"], ["A=2", "B=3"], {"SHOAL_X": "x", "B": "no"})
    assert env == ["PATH=/img", "A=2", "B=3", "SHOAL_X=x"]
    assert merge_env(None, None, {})[0] == f"PATH={DEFAULT_PATH}"


def test_user_names_ids_and_groups() -> None:
    assert resolve_user("", PASSWD, GROUP) == ProcessUser(0, 0, (), "/root")
    assert resolve_user("app", PASSWD, GROUP) == ProcessUser(1000, 1000, (50,), "/home/app")
    assert resolve_user("1000:50", PASSWD, GROUP).gid == 50
    assert resolve_user("4242", PASSWD, GROUP) == ProcessUser(4242, 0, (), "/")
    assert resolve_user("app:staff", PASSWD, GROUP).gid == 50
    with pytest.raises(UnknownUser, match=r"^unable to find user nobody: no matching entries"):
        resolve_user("nobody", PASSWD, GROUP)


def test_exec_user_names_become_numeric_ids_for_runc() -> None:
    assert numeric_user("app", PASSWD, GROUP) == "1000:1000"
    assert numeric_user("app:staff", PASSWD, GROUP) == "1000:50"
    assert numeric_user("4242:7", PASSWD, GROUP) == "4242:7"
    with pytest.raises(UnknownUser, match=r"^unable to find user bob: no matching entries"):
        numeric_user("bob", PASSWD, GROUP)


def test_capabilities_add_drop_all() -> None:
    assert capabilities([], []) == list(DEFAULT_CAPABILITIES)
    caps = capabilities(["NET_ADMIN"], ["cap_kill"])
    assert "CAP_NET_ADMIN" in caps and "CAP_KILL" not in caps
    assert capabilities(["CHOWN"], ["ALL"]) == ["CAP_CHOWN"]
    assert "CAP_SYS_ADMIN" in capabilities(["ALL"], [])
    with pytest.raises(TaskStartError, match="unknown capability"):
        capabilities(["NOPE"], [])


def test_stop_signal_service_then_image_then_sigterm() -> None:
    assert stop_signal("", "") == signal.SIGTERM
    assert stop_signal("", "SIGQUIT") == signal.SIGQUIT
    assert stop_signal("usr1", "SIGQUIT") == signal.SIGUSR1
    assert stop_signal("9", "") == 9
    with pytest.raises(TaskStartError, match="invalid signal: BOGUS"):
        stop_signal("BOGUS", "")


def _input(**kw: object) -> SpecInput:
    base: dict[str, object] = {
        "task_id": "t" * 25,
        "hostname": "tttttttttttt",
        "argv": ["sh"],
        "env": ["PATH=/bin", "HOSTNAME=wrong"],
        "cwd": "/tmp",
        "user": ProcessUser(1000, 1000, (50,), "/home/app"),
        "netns_path": "/run/netns/shoal-t-tttttttttttt",
        "cgroups_path": "/shoal/" + "t" * 25,
    }
    base.update(kw)
    return SpecInput(**base)  # type: ignore[arg-type]


def test_config_namespaces_process_and_mounts() -> None:
    cfg = build_config(_input(etc_files={"/etc/hosts": "/b/hosts"}, read_only=True))
    kinds = {ns["type"]: ns.get("path") for ns in cfg["linux"]["namespaces"]}
    assert kinds == {"pid": None, "mount": None, "ipc": None, "uts": None,
                     "network": "/run/netns/shoal-t-tttttttttttt"}  # fmt: skip
    proc = cfg["process"]
    assert proc["args"] == ["sh"] and proc["cwd"] == "/tmp"
    assert proc["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [50]}
    assert proc["env"][:2] == ["HOSTNAME=tttttttttttt", "PATH=/bin"]
    assert "HOME=/home/app" in proc["env"]
    assert cfg["root"] == {"path": "rootfs", "readonly": True}
    dests = [m["destination"] for m in cfg["mounts"]]
    assert dests[:3] == ["/proc", "/dev", "/dev/pts"] and "/dev/shm" in dests
    hosts = next(m for m in cfg["mounts"] if m["destination"] == "/etc/hosts")
    assert hosts["source"] == "/b/hosts" and "ro" in hosts["options"]
    assert "/proc/kcore" in cfg["linux"]["maskedPaths"]
    assert "/proc/sys" in cfg["linux"]["readonlyPaths"]


def test_init_is_mounted_read_only_and_runs_the_args_as_dockerd_does() -> None:
    cfg = build_config(_input(argv=["httpd", "-f"], init_binary="/usr/bin/tini-static"))
    assert cfg["process"]["args"] == ["/sbin/docker-init", "--", "httpd", "-f"]
    init = next(m for m in cfg["mounts"] if m["destination"] == "/sbin/docker-init")
    assert init["source"] == "/usr/bin/tini-static" and "ro" in init["options"]
    plain = build_config(_input(argv=["httpd"]))
    assert plain["process"]["args"] == ["httpd"]
    assert all(m["destination"] != "/sbin/docker-init" for m in plain["mounts"])


def test_config_resources_and_limits() -> None:
    cfg = build_config(
        _input(
            limits=Resources(nano_cpus=500_000_000, memory_bytes=64 << 20, pids=100),
            ulimits=[Ulimit(name="nofile", soft=1024, hard=2048)],
            oom_score_adj=500,
            sysctls={"net.core.somaxconn": "1024"},
        )
    )
    res = cfg["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20}
    assert res["cpu"] == {"quota": 50_000, "period": 100_000}
    assert res["pids"] == {"limit": 100}
    assert res["devices"] == [{"allow": False, "access": "rwm"}]
    assert cfg["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}]
    assert cfg["process"]["oomScoreAdj"] == 500
    assert cfg["linux"]["sysctl"] == {}  # net.* goes to the task netns (netns_sysctls)
    assert cfg["linux"]["cgroupsPath"] == "/shoal/" + "t" * 25


def test_a_user_may_bind_low_ports_as_under_dockerd_and_the_service_may_say_otherwise() -> None:
    # dockerd sets these in every container with its own network namespace (20.10+), so a
    # service run as `--user app` can still listen on port 80
    assert netns_sysctls(_input()) == {
        "net.ipv4.ip_unprivileged_port_start": "0",
        "net.ipv4.ping_group_range": "0 2147483647",
    }
    own = _input(sysctls={"net.ipv4.ip_unprivileged_port_start": "1024", "kernel.msgmax": "1"})
    assert netns_sysctls(own)["net.ipv4.ip_unprivileged_port_start"] == "1024"
    # runc runs inside the task netns and refuses any net.* sysctl in config.json there
    # ("not allowed in host network namespace"): only the others go to runc
    assert build_config(own)["linux"]["sysctl"] == {"kernel.msgmax": "1"}


def test_runtime_selection_is_by_label_only() -> None:
    assert is_exec_task(ContainerSpec(image="busybox", labels={"shoal.runtime": "exec"}))
    assert not is_exec_task(ContainerSpec(image="busybox"))
    assert not is_exec_task(ContainerSpec(image="shoal", labels={"shoal.runtime": "oci"}))


@pytest.mark.parametrize("module", ["spec.py", "users.py"])
def test_spec_builder_is_pure(module: str) -> None:
    import ast
    from pathlib import Path

    import shoal.agent.oci
    from tests.unit.raft.test_purity import FORBIDDEN_CALLS, FORBIDDEN_MODULES

    path = Path(shoal.agent.oci.__file__).parent / module
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{module}:{node.lineno}"
            continue
        else:
            continue
        assert not roots & FORBIDDEN_MODULES, f"{module}:{node.lineno} imports {roots}"
