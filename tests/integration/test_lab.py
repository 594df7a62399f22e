"""The lab itself: topology, isolation, cables, power, exec, and a down that leaves nothing.

Most tests run the lab with a stand-in daemon (a shell that forks a setsid'd `sleep`), so
they test the lab's own machinery; the tests at the end run the real `shoal daemon`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shoal.errors import InvalidArgument, Unavailable
from shoal.lab import Lab
from shoal.lab.ask import AskFailed, http_get, probe
from shoal.lab.cgroups import cgroup2_mount, procs
from shoal.lab.demo import run_demo
from shoal.lab.iproute import list_netns
from shoal.lab.layout import LabLayout, host_address

pytestmark = pytest.mark.lab

# Stand-in daemon: it and a grandchild in its own session, both long-lived.
FAKE_DAEMON = ["sh", "-c", "setsid sleep 1000 & exec sleep 1000"]


def fake_daemon(layout: LabLayout, host: str) -> list[str]:
    return FAKE_DAEMON


def wait_until(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def ping(lab: Lab, host: str, address: str) -> bool:
    argv = ["busybox", "ping", "-c", "1", "-W", "1", address]
    return lab.exec(host, argv, capture=True, timeout=10).returncode == 0


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def root_routes() -> str:
    return subprocess.run(["ip", "route", "show"], capture_output=True, text=True).stdout


@pytest.fixture
def bare(lab_tag: str) -> Iterator[Lab]:
    """A built 2-node lab whose "daemons" are stand-ins, started."""
    lab = Lab(lab_tag, daemon_argv=fake_daemon)
    lab.down()
    try:
        lab.build(2, 1)
        for host in lab.hosts():
            lab.start(host, wait=False)
        yield lab
    finally:
        lab.down()


# -- layout: pure ------------------------------------------------------------------------
def test_addresses_follow_the_issue() -> None:
    assert host_address("h1") == "198.18.0.11"
    assert host_address("h9") == "198.18.0.19"
    assert host_address("h10") == "198.18.0.20"
    assert host_address("client") == "198.18.0.2"
    for bad in ("h0", "h245", "x1", "h01", ""):
        with pytest.raises(InvalidArgument):
            host_address(bad)


def test_names_match_exactly() -> None:
    default, tagged = LabLayout(), LabLayout("lt1")
    assert default.netns("h3") == "shoal-h3" and default.fabric_ns == "shoal-fabric"
    assert tagged.netns("client") == "shoal-lt1-client"
    assert str(default.socket("h2")) == "/run/shoal-lab/h2.sock"
    for name in ("shoal-h1", "shoal-h12", "shoal-fabric", "shoal-client"):
        assert default.is_lab_netns(name)
    for name in ("shoal-ct-1", "shoal-md-h1", "shoal-h1x", "shoal-t-abc", "shoal-lt1-h1"):
        assert not default.is_lab_netns(name)
    assert tagged.is_lab_netns("shoal-lt1-h1") and not tagged.is_lab_netns("shoal-h1")
    with pytest.raises(InvalidArgument):
        LabLayout("t")  # would collide with task namespaces `shoal-t-*`


# -- topology ----------------------------------------------------------------------------
def test_topology_reaches_only_the_fabric(lab_tag: str) -> None:
    lab = Lab(lab_tag, daemon_argv=fake_daemon)
    lab.down()
    links, routes = root_links(), root_routes()
    try:
        lab.build(3, 1)
        names = set(list_netns())
        prefix = lab.layout.prefix
        expected = {f"{prefix}-{n}" for n in ("h1", "h2", "h3", "client", "fabric")}
        assert expected <= names
        assert ping(lab, "client", "198.18.0.11")
        assert ping(lab, "client", "198.18.0.13")
        assert ping(lab, "h2", "198.18.0.11")
        for host in ["client", *lab.hosts()]:
            out = lab.exec(host, ["ip", "-o", "addr", "show", "dev", "eth0"], capture=True)
            assert f"inet {host_address(host)}/24" in out.stdout
            assert lab.exec(host, ["ip", "route", "show", "default"], capture=True).stdout == ""
            assert (
                lab.exec(host, ["ip", "-6", "route", "show", "default"], capture=True).stdout == ""
            )
        # the root namespace did not change, and nothing reaches it from the lab
        assert root_links() == links and root_routes() == routes
        # a route lookup (no packet is sent): nothing outside 198.18.0.0/24 is reachable
        lookup = lab.exec("h1", ["ip", "route", "get", "203.0.113.1"], capture=True)
        assert lookup.returncode != 0 and "unreachable" in lookup.stderr
    finally:
        lab.down()
    assert not expected & set(list_netns())


def test_cut_and_heal(bare: Lab) -> None:
    assert ping(bare, "client", "198.18.0.12")
    bare.cut("h2")
    assert not ping(bare, "client", "198.18.0.12")
    assert ping(bare, "client", "198.18.0.11")  # only h2's cable
    assert "running,cut" in {s.state for s in bare.status() if s.host == "h2"}
    bare.heal("h2")
    wait_until("h2 to answer again", lambda: ping(bare, "client", "198.18.0.12"))
    assert {s.host: s.state for s in bare.status()}["h2"] == "running"


# -- power -------------------------------------------------------------------------------
def test_stop_kills_everything_on_the_host_and_start_brings_it_back(bare: Lab) -> None:
    h1_cg, h2_cg = bare.layout.cgroup("h1"), bare.layout.cgroup("h2")
    for cg in (h1_cg, h2_cg):
        wait_until(f"both stand-in processes in {cg}", lambda cg=cg: len(procs(cg)) == 2)
    before_h2 = procs(h2_cg)
    # a command exec'd on the host is on it too, even when it detaches
    bare.exec("h1", ["sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 &"], check=True)
    wait_until("the exec'd sleep", lambda: len(procs(h1_cg)) == 3)
    before_h1 = procs(h1_cg)
    bare.cut("h1")
    bare.stop("h1")
    for pid in before_h1:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    assert bare.layout.netns("h1") not in list_netns()
    assert procs(h2_cg) == before_h2  # the other host lives on
    status = {s.host: s for s in bare.status()}
    assert status["h1"].state == "stopped,cut" and status["h1"].pid is None
    with pytest.raises(Unavailable):
        bare.exec("h1", ["true"])

    bare.start("h1", wait=False)
    wait_until("h1's stand-in daemon", lambda: len(procs(h1_cg)) == 2)
    status = {s.host: s for s in bare.status()}
    assert status["h1"].state == "running,cut" and status["h1"].pid not in before_h1
    assert not ping(bare, "client", "198.18.0.11")  # the cable stays cut across power cycles
    bare.heal("h1")
    wait_until("h1 on the fabric", lambda: ping(bare, "client", "198.18.0.11"))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


def test_kill_daemon_spares_the_rest(bare: Lab) -> None:
    cg = bare.layout.cgroup("h1")
    wait_until("both stand-in processes on h1", lambda: len(procs(cg)) == 2)
    daemon = bare.state.hosts["h1"].pid
    bare.kill_daemon("h1")
    assert procs(cg) and daemon not in procs(cg)
    assert {s.host: s.state for s in bare.status()}["h1"] == "no daemon"
    bare.start("h1", wait=False)
    assert bare.daemon_alive("h1")


def test_up_reports_a_daemon_that_dies_and_leaves_nothing(lab_tag: str) -> None:
    def broken(layout: LabLayout, host: str) -> list[str]:
        return ["sh", "-c", "echo 'boom: no such thing' >&2; exit 3"]

    lab = Lab(lab_tag, daemon_argv=broken)
    lab.down()
    with pytest.raises(Unavailable, match=r"(?s)h1: its daemon exited.*boom: no such thing"):
        lab.up(1)
    assert not [n for n in list_netns() if lab.layout.is_lab_netns(n)]
    assert not lab.layout.cgroup_dir.exists() and not lab.is_up()
    lab.down(purge=True)


# -- exec --------------------------------------------------------------------------------
def test_exec_env_and_exit_code(bare: Lab) -> None:
    out = bare.exec(
        "h2", ["sh", "-c", "echo $SHOAL_HOST $DOCKER_HOST; command -v shoal"], capture=True
    )
    sock = f"unix://{bare.layout.socket('h2')}"
    assert out.stdout.split() == [sock, sock, str(Path(sys.executable).parent / "shoal")]
    assert bare.exec("h1", ["sh", "-c", "exit 7"]).returncode == 7
    assert bare.exec("client", ["cat"], input="hi", capture=True).stdout == "hi"
    client_env = bare.exec("client", ["sh", "-c", "echo $SHOAL_HOST"], capture=True).stdout
    assert client_env.strip() == f"unix://{bare.layout.socket('h1')}"


def _lab_cli(lab: Lab, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    code = "from shoal.lab.cli import lab; lab(prog_name='shoal lab')"
    env = {**os.environ, "SHOAL_LAB_TAG": lab.layout.tag}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
    )


def test_cli_exec_ls_cut_heal(bare: Lab) -> None:
    done = _lab_cli(
        bare, "exec", "h1", "--", "sh", "-c", "cat; ip -o -4 addr show eth0; exit 5", stdin="in\n"
    )
    assert done.returncode == 5
    assert done.stdout.startswith("in\n") and "198.18.0.11/24" in done.stdout
    table = _lab_cli(bare, "ls").stdout.splitlines()
    assert table[0].split() == ["HOST", "NAMESPACE", "ADDRESS", "ROLE", "STATE", "DAEMON-PID"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["h1"][1:5] == [bare.layout.netns("h1"), "198.18.0.11", "manager", "running"]
    assert rows["h2"][3] == "worker" and rows["client"][2] == "198.18.0.2"
    assert _lab_cli(bare, "cut", "h2").returncode == 0
    assert not ping(bare, "client", "198.18.0.12")
    assert _lab_cli(bare, "heal", "h2").returncode == 0
    wait_until("h2 back", lambda: ping(bare, "client", "198.18.0.12"))
    bad = _lab_cli(bare, "stop", "h9")
    assert bad.returncode != 0 and "no lab host 'h9'" in bad.stderr + str(bad.stdout)


# -- down --------------------------------------------------------------------------------
def test_down_leaves_nothing_even_without_state(bare: Lab) -> None:
    layout = bare.layout
    task_ns = f"shoal-t-{layout.tag}x"
    orphan_ns = f"shoal-t-{layout.tag}o"
    decoys = [f"{layout.prefix}-h1x", f"{layout.prefix}x-h1"]
    escaped = None
    try:
        # a task namespace of h1, as a daemon makes it, with a process that left the cgroup
        for name in (task_ns, orphan_ns, *decoys):
            subprocess.run(["ip", "netns", "add", name], check=True)
        veth = ["link", "add", "vt0", "type", "veth", "peer", "name", "eth0", "netns", task_ns]
        subprocess.run(["ip", "-n", layout.netns("h1"), *veth], check=True)
        escaped = subprocess.Popen(["ip", "netns", "exec", task_ns, "sleep", "1000"])
        wait_until("the escaped process", lambda: _in_netns(escaped.pid, task_ns))
        layout.state_file.unlink()  # down works from names alone
        bare.down()
        escaped.wait(timeout=10)
        left = set(list_netns())
        assert not {task_ns, orphan_ns} & left
        assert not [n for n in left if layout.is_lab_netns(n)]
        assert set(decoys) <= left  # near-miss names are not ours
        assert not layout.cgroup_dir.exists() and not layout.run_dir.exists()
        assert bare.down() == []  # idempotent
    finally:
        if escaped is not None and escaped.poll() is None:
            escaped.kill()
            escaped.wait()
        for name in (task_ns, orphan_ns, *decoys):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _in_netns(pid: int, name: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return False


def test_cgroup_mount_is_found() -> None:
    mounts = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
    assert str(cgroup2_mount(mounts)) == "/sys/fs/cgroup/unified"
    assert str(cgroup2_mount("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")) == "/sys/fs/cgroup"


# -- with the real daemon ----------------------------------------------------------------
def test_one_node_lab_is_a_swarm(lab1: Lab) -> None:
    info = lab1.client("h1").get("/info")
    assert info["Swarm"]["LocalNodeState"] == "active"
    assert info["Swarm"]["NodeAddr"] == "198.18.0.11"
    done = lab1.exec("h1", ["shoal", "node", "ls"], capture=True, timeout=30)
    assert done.returncode == 0 and "shoal-h1" in done.stdout
    with pytest.raises(AskFailed):
        http_get(lab1, "198.18.0.11", 8080, timeout=1)  # nothing published yet
    assert probe(lab1, "http", ["198.18.0.11:1"], timeout=1)[0]["ok"] is False


def test_demo_tells_the_story_and_a_power_cycle_brings_the_service_back(
    lab_tag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = Lab(lab_tag + "d")  # a lab of its own: the demo brings it up
    lab.down()
    try:
        run_demo(lab, nodes=1, keep=True)
        out = capsys.readouterr().out
        for port in (8080, 9090):
            answers = [line for line in out.splitlines() if f"198.18.0.11:{port} -> task" in line]
            assert len(answers) == 9 and all("on shoal-h1" in line for line in answers)
        assert out.count("9 answers from 3 task(s): web.1 x3, web.2 x3, web.3 x3") == 2
        # it ends with where to watch the swarm and the doctor's table (h1 alone: its own row)
        assert "http://127.0.0.1:9323/" in out and "shoal doctor on h1" in out
        assert "shoal-h1 (this node)" in out and "2377/TCP" in out

        tasks_before = set(_answering_tasks(lab))
        lab.stop("h1")
        with pytest.raises(AskFailed):
            http_get(lab, "198.18.0.11", 8080, timeout=1)  # h1 is off
        lab.start("h1")
        wait_until(
            "the service to answer again on both ports",
            lambda: all(_answers(lab, port) for port in (8080, 9090)),
            timeout=60,
        )
        assert not tasks_before & set(_answering_tasks(lab))  # new tasks, old ones died
    finally:
        lab.down()
    assert not [n for n in list_netns() if lab.layout.is_lab_netns(n)]
    assert not lab.layout.cgroup_dir.exists()


def _answers(lab: Lab, port: int) -> bool:
    return probe(lab, "http", [f"198.18.0.11:{port}"], timeout=1)[0]["ok"] is True


def _answering_tasks(lab: Lab) -> list[str]:
    results = probe(lab, "http", ["198.18.0.11:8080"], count=6, timeout=2)
    ids = []
    for result in results:
        fields = dict(line.split(": ", 1) for line in result["body"].splitlines() if ": " in line)
        ids.append(fields["Hostname"])  # the container hostname: its task id[:12]
    return ids
