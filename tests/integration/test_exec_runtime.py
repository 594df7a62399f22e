"""The exec runtime against the real kernel: netns, veths, bridge, shims, processes.

Like the daemon in a lab host, the runtime runs under `ip netns exec <host netns>`: this file
is also the driver script that pytest starts there (`python <this file> '<json args>'`);
each scenario prints its observations as JSON and pytest checks them. Running the first part
of the adoption test in a driver process that exits is a real daemon restart.

Everything created (host netns `shoal-ct-host*`, task netns `shoal-ct-t-*`, processes) is
removed in the fixture's finalizer, by name and by verified pid, also when a test fails.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import timeouts
from tests.integration.labtools import NetnsLab, run
from tests.polling import eventually as _until

REPO = Path(__file__).resolve().parents[2]
NETNS_PREFIX = "shoal-ct-t-"
BRIDGE = "shct0"
GATEWAY = "198.19.1.1/24"


def _new_id() -> str:
    return secrets.token_hex(12)


# --------------------------------------------------------------------------------------
# driver side: runs inside the test's host netns
# --------------------------------------------------------------------------------------
def _runtime(args: dict[str, Any], bridge: str = BRIDGE) -> Any:
    from shoal.agent.exec.runtime import ExecRuntime

    return ExecRuntime(
        Path(args["state_dir"]), bridge=bridge, netns_prefix=NETNS_PREFIX, veth_prefix="vc"
    )


def _cfg(
    task_id: str,
    host: int,
    argv: list[str],
    env: dict[str, str] | None = None,
    workdir: str | None = None,
) -> Any:
    from shoal.agent.exec.runtime import TaskConfig

    return TaskConfig(
        task_id=task_id,
        hostname=task_id[:12],
        argv=argv,
        env=env or {},
        address=ipaddress.IPv4Interface(f"198.19.1.{host}/24"),
        gateway=ipaddress.IPv4Address("198.19.1.1"),
        workdir=workdir,
    )


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


async def scenario_serve(args: dict[str, Any]) -> dict[str, Any]:
    rt = _runtime(args)
    await rt.ensure_node_network(ipaddress.IPv4Interface(GATEWAY))
    await rt.ensure_node_network(ipaddress.IPv4Interface(GATEWAY))  # idempotent
    # a cached MAC of an earlier task that had the first task's address
    subprocess.run(
        ["ip", "neigh", "replace", "198.19.1.5", "lladdr", "0a:58:de:ad:be:ef", "dev", BRIDGE,
         "nud", "stale"],
        check=True,
    )
    out = []
    for task_id, host, www in zip(args["ids"], (5, 6), args["www"], strict=True):
        began = time.monotonic()
        pid = await rt.start(
            _cfg(task_id, host, ["busybox", "httpd", "-f", "-p", "80"], workdir=www)
        )
        out.append({"id": task_id, "pid": pid, "ms": (time.monotonic() - began) * 1e3})
    neigh = subprocess.run(["ip", "neigh", "show", "dev", BRIDGE], capture_output=True, text=True)
    return {"tasks": out, "neigh": neigh.stdout}  # the driver ends: the tasks live on


async def scenario_adopt(args: dict[str, Any]) -> dict[str, Any]:
    from shoal.agent.exec.taskdir import ProcRef

    rt = _runtime(args)  # a new daemon on the same state dir
    records = {r.task_id: [str(r.address), r.alive] for r in rt.existing()}
    adopted = {t: await rt.adopt(t) for t in args["ids"]}
    killed, stopped = args["ids"]
    program = ProcRef.load(Path(args["state_dir"]) / killed / "pid")
    assert program is not None
    os.kill(program.pid, signal.SIGKILL)
    status_killed = await timeouts.wait_for(rt.wait(killed), 10)
    await rt.stop(stopped, 5.0)
    status_stopped = await timeouts.wait_for(rt.wait(stopped), 10)
    for task_id in args["ids"]:
        await rt.remove(task_id)
    await rt.remove(killed)  # idempotent
    left = {t: sorted(os.listdir(Path(args["state_dir"]) / t)) for t in args["ids"]}
    return {
        "records": records,
        "adopted": adopted,
        "killed": [status_killed.code, status_killed.message],
        "stopped": [status_stopped.code, status_stopped.message],
        "files_left": left,
        "existing_after": [r.task_id for r in rt.existing()],
        "links": _links(),
    }


async def scenario_logs(args: dict[str, Any]) -> dict[str, Any]:
    from shoal.agent.exec.logs import follow, read_logs

    rt = _runtime(args)
    await rt.ensure_node_network(ipaddress.IPv4Interface(GATEWAY))
    script = 'hostname; echo "foo=$FOO"; echo "home=$HOME"; echo to-stderr >&2; exit 3'
    first, second = args["ids"]
    await rt.start(_cfg(first, 7, ["sh", "-c", script], {"FOO": "bar baz"}))
    status = await timeouts.wait_for(rt.wait(first), 10)
    lines = [[ln.stream, ln.text] for ln in read_logs(rt.log_path(first))]
    tail = [ln.text for ln in read_logs(rt.log_path(first), tail=1)]
    times = [ln.time for ln in read_logs(rt.log_path(first))]
    await rt.start(_cfg(second, 8, ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.1; done"]))
    watch = asyncio.ensure_future(rt.wait(second))
    followed = [ln.text async for ln in follow(rt.log_path(second), done=watch.done, poll=0.02)]
    for task_id in args["ids"]:
        await rt.purge(task_id)
    return {
        "status": [status.code, status.message],
        "lines": lines,
        "tail": tail,
        "times": times,
        "followed": followed,
        "dirs_left": sorted(os.listdir(args["state_dir"])),
    }


async def scenario_stop(args: dict[str, Any]) -> dict[str, Any]:
    from shoal.agent.exec.logs import read_logs
    from shoal.agent.exec.taskdir import ProcRef

    rt = _runtime(args)
    await rt.ensure_node_network(ipaddress.IPv4Interface(GATEWAY))
    polite, stubborn, victim = args["ids"]
    loop = "echo ready; while :; do sleep 0.05; done"
    await rt.start(_cfg(polite, 9, ["sh", "-c", f'trap "echo bye; exit 0" TERM; {loop}']))
    await rt.start(_cfg(stubborn, 10, ["sh", "-c", f'trap "" TERM; {loop}']))
    pid = await rt.start(_cfg(victim, 11, ["sleep", "1000"]))
    for task_id in (polite, stubborn):  # traps are set once "ready" is printed
        await _until(lambda t=task_id: any(ln.text == "ready" for ln in read_logs(rt.log_path(t))))

    async def timed_stop(task_id: str, grace: float) -> float:
        began = time.monotonic()
        await rt.stop(task_id, grace)
        return time.monotonic() - began

    grace = 1.0
    took = await asyncio.gather(timed_stop(polite, grace), timed_stop(stubborn, grace))
    statuses = {t: (await rt.wait(t)).code for t in (polite, stubborn)}
    await rt.stop(polite, grace)  # no-op once exited
    shim = ProcRef.load(Path(args["state_dir"]) / victim / "shim.json")
    assert shim is not None
    rss = _rss_kib(shim.pid)
    os.kill(pid, signal.SIGKILL)
    killed = await timeouts.wait_for(rt.wait(victim), 10)
    polite_log = [ln.text for ln in read_logs(rt.log_path(polite))]
    for task_id in args["ids"]:
        await rt.purge(task_id)
    return {
        "took": took,
        "grace": grace,
        "codes": [statuses[polite], statuses[stubborn]],
        "polite_log": polite_log,
        "killed": [killed.code, killed.message],
        "shim_rss_kib": rss,
    }


async def scenario_zygote(args: dict[str, Any]) -> dict[str, Any]:
    """The shim zygote dies: its shims and their programs live on, the next start gets a
    new zygote, removals (netns unpins) go through it; `close` ends it."""
    from shoal.agent.exec.taskdir import ProcRef

    rt = _runtime(args)
    await rt.ensure_node_network(ipaddress.IPv4Interface(GATEWAY))
    first, second = args["ids"]
    first_pid = await rt.start(_cfg(first, 12, ["sleep", "1000"]))
    old_zygote = rt._zygote.pid
    assert old_zygote is not None
    shim = ProcRef.load(Path(args["state_dir"]) / first / "shim.json")
    assert shim is not None
    shim_parent_before = _ppid(shim.pid)
    shim_comm = Path(f"/proc/{shim.pid}/comm").read_text().strip()
    os.kill(old_zygote, signal.SIGKILL)
    await _until(lambda: ProcRef.of(old_zygote) is None)
    shim_alive = shim.alive()
    program_alive = ProcRef.of(first_pid) is not None
    second_pid = await rt.start(_cfg(second, 13, ["sleep", "1000"]))
    new_zygote = rt._zygote.pid
    await rt.stop(first, 1.0)
    first_status = await timeouts.wait_for(rt.wait(first), 10)
    for task_id in args["ids"]:
        await rt.remove(task_id)
    second_gone = ProcRef.of(second_pid) is None
    rt.close()
    assert new_zygote is not None
    await _until(lambda: ProcRef.of(new_zygote) is None)
    return {
        "old_zygote": old_zygote,
        "new_zygote": new_zygote,
        "shim_parent_before": shim_parent_before,
        "shim_comm": shim_comm,
        "shim_alive_after_zygote": shim_alive,
        "program_alive_after_zygote": program_alive,
        "first_status": [first_status.code, first_status.message],
        "second_gone": second_gone,
        "zygote_after_close": rt._zygote.pid,
    }


def _ppid(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rfind(")") + 2 :].split()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


async def scenario_failures(args: dict[str, Any]) -> dict[str, Any]:
    from shoal.agent.exec.runtime import TaskStartError

    rt = _runtime(args)
    await rt.ensure_node_network(ipaddress.IPv4Interface(GATEWAY))
    missing, plumbing = args["ids"]
    errors = []
    try:
        await rt.start(_cfg(missing, 12, ["nosuchcmd-shoal-ct", "x"]))
    except TaskStartError as exc:
        errors.append(exc.message)
    broken = _runtime(args, bridge="shctnone")  # its bridge was never made: veth fails
    try:
        await broken.start(_cfg(plumbing, 13, ["sleep", "1000"]))
    except TaskStartError as exc:
        errors.append(exc.message)
    return {
        "errors": errors,
        "dirs_left": sorted(os.listdir(args["state_dir"])),
        "links": _links(),
    }


SCENARIOS = {
    "serve": scenario_serve,
    "adopt": scenario_adopt,
    "logs": scenario_logs,
    "stop": scenario_stop,
    "failures": scenario_failures,
    "zygote": scenario_zygote,
}


def _driver_main(raw: str) -> None:
    args = json.loads(raw)
    result = asyncio.run(SCENARIOS[args["scenario"]](args))
    print(json.dumps(result))


# --------------------------------------------------------------------------------------
# pytest side: runs in the root namespaces, owns and cleans everything
# --------------------------------------------------------------------------------------
def drive_in(host: str, state_dir: Path, scenario: str, **args: Any) -> dict[str, Any]:
    """Run `scenario` of this file's driver inside the host netns; what it observed."""
    payload = json.dumps({"scenario": scenario, "state_dir": str(state_dir), **args})
    proc = subprocess.run(
        ["ip", "netns", "exec", host, sys.executable, __file__, payload],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, f"driver {scenario} failed:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def kill_tasks(state_dir: Path) -> None:
    """The runtime's programs and shims (by verified pid) and task namespaces, gone."""
    from shoal.agent.exec.taskdir import ProcRef

    dirs = list(state_dir.iterdir()) if state_dir.is_dir() else []
    for task_dir in dirs:  # the program's group first, then its shim
        program = ProcRef.load(task_dir / "pid")
        if program is not None and program.alive():
            os.killpg(program.pid, signal.SIGKILL)
        shim = ProcRef.load(task_dir / "shim.json")
        if shim is not None and shim.alive():
            os.kill(shim.pid, signal.SIGKILL)
    for task_dir in dirs:
        name = NETNS_PREFIX + task_dir.name[:12]
        if Path("/run/netns", name).exists():
            subprocess.run(["ip", "netns", "delete", name], check=False)


HostDriver = Callable[..., dict[str, Any]]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetnsLab]:
    """The host netns the runtime runs in, first of the lab's namespaces."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    lab = NetnsLab()
    lab.on_cleanup.append(lambda: kill_tasks(tmp_path / "tasks"))
    try:
        lab.netns(f"shoal-ct-host{secrets.token_hex(3)}", lo=False)
        yield lab
    finally:
        lab.cleanup()


@pytest.fixture
def drive(lab: NetnsLab, tmp_path: Path) -> HostDriver:
    """`drive(scenario, **args)`: a scenario run in the lab's host, on its state dir."""
    return functools.partial(drive_in, lab.namespaces[0], tmp_path / "tasks")


def _netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.mark.lab
def test_replicas_share_a_port_and_survive_a_daemon_restart(
    lab: NetnsLab, drive: HostDriver, tmp_path: Path
) -> None:
    ids = [_new_id(), _new_id()]
    www = []
    for n, _ in enumerate(ids):
        site = tmp_path / f"www{n}"
        site.mkdir()
        (site / "index.html").write_text(f"hello from task {n}\n")
        www.append(str(site))
    started = drive("serve", ids=ids, www=www)
    print("start latency (ms):", [round(t["ms"], 1) for t in started["tasks"]])
    assert "de:ad:be:ef" not in started["neigh"]  # the stale entry went with the new task

    # the driver ("daemon") is gone; both tasks serve port 80 on their own address
    for n, host in enumerate((5, 6)):
        got = run(
            "curl", "-sS", "--noproxy", "*", "-m", "5", f"http://198.19.1.{host}:80/",
            check=False, ns=lab.namespaces[0],
        )
        assert got.stdout == f"hello from task {n}\n", got.stderr
    # task netns made inside the host's mount namespace are visible from the root one
    assert {NETNS_PREFIX + t[:12] for t in ids} <= _netns_list()
    uts = subprocess.run(
        ["nsenter", "-t", str(started["tasks"][0]["pid"]), "-u", "hostname"],
        capture_output=True,
        text=True,
    )
    assert uts.stdout.strip() == ids[0][:12], uts.stderr

    result = drive("adopt", ids=ids)
    assert result["records"] == {ids[0]: ["198.19.1.5/24", True], ids[1]: ["198.19.1.6/24", True]}
    assert result["adopted"] == {ids[0]: True, ids[1]: True}
    assert result["killed"] == [137, "task killed by signal 9"]
    assert result["stopped"] == [143, "task killed by signal 15"]
    assert result["existing_after"] == []
    assert result["files_left"] == {t: ["exit", "log.jsonl"] for t in ids}
    assert not {NETNS_PREFIX + t[:12] for t in ids} & _netns_list()
    assert "vc" + ids[0][:11] not in result["links"]
    assert "vc" + ids[1][:11] not in result["links"]


@pytest.mark.lab
def test_hostname_env_stderr_exit_code_and_follow(drive: HostDriver) -> None:
    ids = [_new_id(), _new_id()]
    result = drive("logs", ids=ids)
    assert result["status"] == [3, "task exited with code 3"]
    assert sorted(result["lines"]) == sorted(
        [
            ["stdout", ids[0][:12]],
            ["stdout", "foo=bar baz"],
            ["stdout", "home=/root"],
            ["stderr", "to-stderr"],
        ]
    )
    assert len(result["tail"]) == 1
    assert all(t.endswith("Z") and len(t) == 30 for t in result["times"])  # RFC 3339 nano
    assert result["followed"] == ["line1", "line2", "line3"]
    assert result["dirs_left"] == []


@pytest.mark.lab
def test_stop_grace_then_sigkill_and_kill_9(drive: HostDriver) -> None:
    result = drive("stop", ids=[_new_id(), _new_id(), _new_id()])
    polite_took, stubborn_took = result["took"]
    assert result["codes"] == [0, 137]
    assert polite_took < result["grace"]
    assert stubborn_took >= result["grace"]
    # the whole group got SIGTERM: sh may also report its `sleep` child "Terminated"
    assert result["polite_log"][0] == "ready"
    assert result["polite_log"][-1] == "bye"
    assert result["killed"] == [137, "task killed by signal 9"]
    print("shim RSS (KiB):", result["shim_rss_kib"])


@pytest.mark.lab
def test_shims_outlive_their_zygote_and_a_new_one_takes_over(drive: HostDriver) -> None:
    ids = [_new_id(), _new_id()]
    result = drive("zygote", ids=ids)
    assert result["shim_parent_before"] == result["old_zygote"]  # forked by the zygote
    assert result["shim_comm"] == "shoal-shim"  # and named so in ps/top
    assert result["shim_alive_after_zygote"] and result["program_alive_after_zygote"]
    assert result["new_zygote"] != result["old_zygote"]
    assert result["first_status"] == [143, "task killed by signal 15"]
    assert result["second_gone"]
    assert result["zygote_after_close"] is None
    assert not {NETNS_PREFIX + t[:12] for t in ids} & _netns_list()  # unpinned by the zygote


@pytest.mark.lab
def test_failed_starts_leave_nothing_behind(drive: HostDriver) -> None:
    ids = [_new_id(), _new_id()]
    result = drive("failures", ids=ids)
    missing, plumbing = result["errors"]
    assert missing == (
        'starting container failed: exec: "nosuchcmd-shoal-ct": executable file not found in $PATH'
    )
    assert plumbing.startswith("starting container failed: ")
    assert result["dirs_left"] == []
    assert "vc" + ids[1][:11] not in result["links"]
    assert not {NETNS_PREFIX + t[:12] for t in ids} & _netns_list()


if __name__ == "__main__":
    _driver_main(sys.argv[1])
