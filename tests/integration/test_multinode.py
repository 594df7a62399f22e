"""Issue 4 in a 3-node lab: joins over 2377, tasks on workers, node failures, drain, and
the refusals (tokens, certificates, roles). Driven through the `shoal` CLI and the API."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.lab import Lab
from shoal.lab.layout import CLIENT
from tests.integration.labtools import EXEC, host_of, nodes, running, shoal, until

pytestmark = pytest.mark.lab

H1 = "198.18.0.11"


def set_heartbeat(lab: Lab, value: str) -> None:
    shoal(lab, "swarm", "update", "--dispatcher-heartbeat", value)


@pytest.fixture(scope="module")
def lab3(lab_tag: str) -> Iterator[Lab]:
    lab = Lab(lab_tag + "m")  # a lab of this session's own (see conftest)
    lab.down()
    try:
        lab.up(nodes=3)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def web(lab3: Lab) -> Iterator[Lab]:
    shoal(lab3, "service", "create", *EXEC, "--name", "web", "--replicas", "3", "--publish",
          "published=8080,target=80", "shoal", "whoami", "--port", "80")
    until(lambda: len(running(lab3)) == 3, what="3 running web tasks")
    yield lab3
    shoal(lab3, "service", "rm", "web", check=False)


def test_three_ready_nodes_with_their_roles(lab3: Lab) -> None:
    until(lambda: all(n["Status"]["State"] == "ready" for n in nodes(lab3).values()))
    ls = shoal(lab3, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}")
    assert sorted(ls.stdout.split("\n")[:3]) == [
        "shoal-h1 Ready Leader", "shoal-h2 Ready ", "shoal-h3 Ready "]
    assert {h: n["Spec"]["Role"] for h, n in nodes(lab3).items()} == {
        "h1": "manager", "h2": "worker", "h3": "worker"}
    # a worker answers manager-only calls like docker does
    proc = shoal(lab3, "node", "ls", host="h2", check=False)
    assert proc.returncode != 0 and "Worker nodes can't be used" in proc.stderr


def test_web_spreads_and_its_tasks_run_on_the_workers(web: Lab) -> None:
    tasks = running(web)
    assert {host_of(web, t["NodeID"]) for t in tasks} == {"h1", "h2", "h3"}
    for task in tasks:
        host = host_of(web, task["NodeID"])
        cgroup = Path(f"/proc/{task['Status']['ContainerStatus']['PID']}/cgroup").read_text()
        assert f"/{web.layout.cgroup(host).name}" in cgroup and web.layout.cgroup_dir.name in cgroup
    # each host's mesh serves the port (the worker got it from the dispatcher)
    for k in (1, 2, 3):
        proc = web.exec(CLIENT, ["curl", "-sS", "--max-time", "3", f"http://198.18.0.1{k}:8080/"],
                        capture=True)
        assert proc.returncode == 0 and "task: web." in proc.stdout, proc.stderr


def _replace_after_stop(lab: Lab, host: str) -> tuple[float, float]:
    victims = {t["ID"] for t in running(lab) if host_of(lab, t["NodeID"]) == host}
    assert victims, f"no web task on {host}"
    start = time.monotonic()
    lab.stop(host)
    until(lambda: nodes(lab)[host]["Status"]["State"] == "down", timeout=30, what=f"{host} down")
    down = time.monotonic() - start
    until(lambda: len(ids := {t["ID"] for t in running(lab)}) == 3 and not ids & victims,
          timeout=30, what="replacement running")
    replaced = time.monotonic() - start
    assert host not in {host_of(lab, t["NodeID"]) for t in running(lab)}
    lab.start(host)
    until(lambda: nodes(lab)[host]["Status"]["State"] == "ready", what=f"{host} ready again")
    stale = [t for t in lab.client("h1").get("/tasks") if t["ID"] in victims]
    assert all(t["DesiredState"] == "shutdown" for t in stale)
    return down, replaced


def test_a_stopped_node_is_marked_down_and_its_task_replaced(web: Lab) -> None:
    down, replaced = _replace_after_stop(web, "h3")
    print(f"\nheartbeat 5s (default): h3 down after {down:.1f}s, replacement running "
          f"after {replaced:.1f}s")
    assert replaced < 25
    set_heartbeat(web, "1s")
    try:
        until(lambda: len(running(web)) == 3 and "h2" in
              {host_of(web, t["NodeID"]) for t in running(web)}, what="a web task on h2")
        time.sleep(1.5)  # the worker picks up the new period at its next heartbeat
        down, replaced = _replace_after_stop(web, "h2")
        print(f"heartbeat 1s: h2 down after {down:.1f}s, replacement running "
              f"after {replaced:.1f}s")
        assert replaced < 8
    finally:
        set_heartbeat(web, "5s")


def test_drain_moves_tasks_and_keeps_new_ones_away(web: Lab) -> None:
    until(lambda: len(running(web)) == 3)
    shoal(web, "node", "update", "--availability", "drain", "shoal-h2")
    try:
        until(lambda: len(r := running(web)) == 3
              and "h2" not in {host_of(web, t["NodeID"]) for t in r}, what="h2 drained")
        shoal(web, "service", "scale", "web=6")
        until(lambda: len(running(web)) == 6)
        assert "h2" not in {host_of(web, t["NodeID"]) for t in running(web)}
    finally:
        shoal(web, "node", "update", "--availability", "active", "shoal-h2")
    shoal(web, "service", "scale", "web=9")
    until(lambda: len(running(web)) == 9)
    assert "h2" in {host_of(web, t["NodeID"]) for t in running(web)}
    shoal(web, "service", "scale", "web=3")


def test_refusals_without_changes(lab3: Lab) -> None:
    token = shoal(lab3, "swarm", "join-token", "-q", "worker").stdout.strip()
    # a live node is not removed without --force; a member cannot join again
    proc = shoal(lab3, "node", "rm", "shoal-h2", check=False)
    assert proc.returncode != 0 and "is not down" in proc.stderr
    proc = shoal(lab3, "swarm", "join", "--token", token, f"{H1}:2377", host="h2", check=False)
    assert proc.returncode != 0 and "already part of a swarm" in proc.stderr
    # h3 leaves; rotated and foreign tokens do not bring it back, the current one does
    shoal(lab3, "swarm", "leave", host="h3")
    shoal(lab3, "swarm", "join-token", "--rotate", "worker")
    new = shoal(lab3, "swarm", "join-token", "-q", "worker").stdout.strip()
    assert new != token
    proc = shoal(lab3, "swarm", "join", "--token", token, f"{H1}:2377", host="h3", check=False)
    assert proc.returncode != 0 and "A valid join token is necessary" in proc.stderr
    foreign = "SWMTKN-1-" + "1" * 50 + "-" + token.split("-")[3]
    proc = shoal(lab3, "swarm", "join", "--token", foreign, f"{H1}:2377", host="h3", check=False)
    assert proc.returncode != 0 and "remote CA does not match fingerprint" in proc.stderr
    old_h3 = nodes(lab3)["h3"]["ID"]
    shoal(lab3, "swarm", "join", "--token", new, f"{H1}:2377", host="h3")
    until(lambda: sum(n["Status"]["State"] == "ready" for n in lab3.client("h1").get("/nodes"))
          == 3, what="h3 back as a new node")
    until(lambda: any(n["ID"] == old_h3 and n["Status"]["State"] == "down"
                      for n in lab3.client("h1").get("/nodes")), what="old h3 down")
    shoal(lab3, "node", "rm", old_h3)


def test_2377_gives_nothing_without_a_certificate(lab3: Lab, tmp_path: Path) -> None:
    out = _s_client(lab3, b"GET / HTTP/1.1\r\n\r\n", "-ign_eof")
    assert "swarm-manager" in out  # the server's certificate: it is a manager
    # what comes back is at most an HTTP/2 GOAWAY: no token, no node, no task
    assert "SWMTKN" not in out and "shoal-h" not in out and "web" not in out
    # a self-signed client certificate is refused in the handshake (TLS 1.2: the alert
    # comes within the handshake; TLS 1.3 sends it after)
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-subj", "/O=x/OU=swarm-manager/CN=evil", "-days", "1"],
                   check=True, capture_output=True)
    out = _s_client(lab3, b"", "-cert", str(cert), "-key", str(key), "-tls1_2")
    # the server drops the connection in the handshake: no session is established
    assert "ssl routines" in out.lower() and "Verify return code: 0" not in out, out
    # without a certificate the dispatcher refuses (only the join is open)
    code = _rpc_script("none", "Dispatcher/Session")
    out = lab3.exec(CLIENT, [sys.executable, "-c", code], capture=True, timeout=30)
    assert "Unauthenticated" in out.stdout, out.stdout + out.stderr


def test_a_worker_certificate_cannot_call_manager_operations(lab3: Lab) -> None:
    certs = lab3.layout.data_root("h2") / "certificates"
    out = lab3.exec("h2", [sys.executable, "-c", _rpc_script(str(certs), "Raft/Send")],
                    capture=True, timeout=30)
    assert "PermissionDenied" in out.stdout, out.stdout + out.stderr


def _s_client(lab: Lab, data: bytes, *flags: str) -> str:
    argv = ["openssl", "s_client", "-connect", f"{H1}:2377", "-alpn", "h2", *flags]
    proc = subprocess.run(lab.exec_argv(CLIENT, argv), env=lab.exec_env(CLIENT), input=data,
                          capture_output=True, timeout=20)
    return (proc.stdout + proc.stderr).decode(errors="replace")


def _rpc_script(certs: str, method: str) -> str:
    """A gRPC call to h1's 2377 with the certificates in `certs` ("none": no client
    certificate; the CA is then read from the handshake); prints the outcome."""
    return f"""
import asyncio, socket, ssl
from pathlib import Path
from shoal.ca.files import load_node_tls
from shoal.cluster.client import ClusterClient
from shoal.cluster.wire import RaftRequest, RaftResponse, SessionMessage, SessionRequest

def presented_ca():
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("{H1}", 2377), timeout=5) as raw:
        with ctx.wrap_socket(raw) as conn:
            return conn._sslobj.get_unverified_chain()[-1].public_bytes(1).encode()

async def main():
    tls = None if {certs!r} == "none" else load_node_tls(Path({certs!r}))
    client = ClusterClient("{H1}:2377", tls.ca_pem if tls else presented_ca(), tls)
    try:
        if {method!r} == "Raft/Send":
            await client.call("Raft/Send", RaftRequest(b"x"), RaftResponse)
        else:
            async for _ in client.stream("Dispatcher/Session", SessionRequest(), SessionMessage):
                break
        print("ALLOWED")
    except Exception as exc:
        print(type(exc).__name__, exc)
    finally:
        await client.close()

asyncio.run(main())
"""
