"""`swarm` commands, `info`, `version`, and the root command's error handling."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from shoal.cli.context import CliContext
from shoal.cli.main import cli
from shoal.errors import Unavailable

from .fakes import FakeDaemon, Hangup, Reply, Shoal


def test_swarm_init(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.add_node(
        "node1id", "shoal-h1", ManagerStatus={"Leader": True, "Addr": "198.18.0.11:2377"}
    )
    result = shoal(
        "swarm", "init", "--advertise-addr", "198.18.0.11", "--default-addr-pool", "198.19.1.7/16",
        "--task-history-limit", "3", "--dispatcher-heartbeat", "2s",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    init = daemon.requests_to("POST", "/swarm/init")[0]
    assert init.body == {
        "ListenAddr": "0.0.0.0:2377",
        "AdvertiseAddr": "198.18.0.11",
        "DataPathAddr": "",
        "DataPathPort": 0,
        "ForceNewCluster": False,
        "Spec": {
            "Labels": None,
            "Orchestration": {"TaskHistoryRetentionLimit": 3},
            "Raft": {"ElectionTick": 0, "HeartbeatTick": 0},
            "Dispatcher": {"HeartbeatPeriod": 2_000_000_000},
            "CAConfig": {},
            "TaskDefaults": {},
            "EncryptionConfig": {"AutoLockManagers": False},
        },
        "AutoLockManagers": False,
        "Availability": "",
        "DefaultAddrPool": ["198.19.0.0/16"],
        "SubnetSize": 24,
    }
    assert result.stdout == (
        "Swarm initialized: current node (node1id) is now a manager.\n\n"
        "To add a worker to this swarm, run the following command:\n\n"
        "    shoal swarm join --token SWMTKN-1-w 198.18.0.11:2377\n\n"
        "To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the "
        "instructions.\n"
    )


def test_swarm_init_bad_pool_sends_nothing(shoal: Shoal, daemon: FakeDaemon) -> None:
    result = shoal("swarm", "init", "--default-addr-pool", "not-a-cidr")
    assert result.exit_code == 125  # docker: a flag it cannot parse
    assert 'invalid argument "not-a-cidr" for "--default-addr-pool" flag' in result.stderr
    assert daemon.requests == []


def test_swarm_join_leave(shoal: Shoal, daemon: FakeDaemon) -> None:
    result = shoal("swarm", "join", "--token", "SWMTKN-1-w", "198.18.0.11:2377")
    assert result.stdout == "This node joined a swarm as a manager.\n"
    assert daemon.requests_to("POST", "/swarm/join")[0].body == {
        "ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "", "DataPathAddr": "",
        "RemoteAddrs": ["198.18.0.11:2377"], "JoinToken": "SWMTKN-1-w", "Availability": "",
    }  # fmt: skip
    assert shoal("swarm", "leave", "-f").stdout == "Node left the swarm.\n"
    assert daemon.requests_to("POST", "/swarm/leave")[0].params == {"force": "1"}


def test_join_token(shoal: Shoal, daemon: FakeDaemon) -> None:
    assert shoal("swarm", "join-token", "-q", "manager").stdout == "SWMTKN-1-m\n"
    result = shoal("swarm", "join-token", "--rotate", "-q", "worker")
    assert result.stdout == "SWMTKN-1-w\n"
    update = daemon.requests_to("POST", "/swarm/update")[0]
    assert update.params == {
        "rotateManagerToken": "false", "rotateManagerUnlockKey": "false",
        "rotateWorkerToken": "true", "version": "7",
    }  # fmt: skip
    assert update.body == {"Name": "default"}
    assert shoal("swarm", "join-token", "admin").stderr == "unknown role admin\n"


def test_swarm_update(shoal: Shoal, daemon: FakeDaemon) -> None:
    result = shoal("swarm", "update", "--cert-expiry", "24h", "--task-history-limit", "10")
    assert result.stdout == "Swarm updated.\n"
    update = daemon.requests_to("POST", "/swarm/update")[0]
    assert update.params["version"] == "7"
    assert update.body == {
        "Name": "default",
        "CAConfig": {"NodeCertExpiry": 86_400_000_000_000},
        "Orchestration": {"TaskHistoryRetentionLimit": 10},
    }


def test_info(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.info = {
        "Name": "shoal-h1",
        "ServerVersion": "0.1.0",
        "Swarm": {
            "NodeID": "node1id", "NodeAddr": "198.18.0.11", "LocalNodeState": "active",
            "ControlAvailable": True, "Managers": 3, "Nodes": 5,
            "RemoteManagers": [{"NodeID": "b", "Addr": "198.18.0.12:2377"},
                               {"NodeID": "a", "Addr": "198.18.0.11:2377"}],
            "Cluster": {"ID": "cluster1", "Spec": {
                "Raft": {"SnapshotInterval": 10000, "HeartbeatTick": 1, "ElectionTick": 10},
                "Dispatcher": {"HeartbeatPeriod": 5_000_000_000},
            }},
        },
    }  # fmt: skip
    text = shoal("info").stdout
    assert " Server Version: 0.1.0\n Swarm: active\n  NodeID: node1id\n  Is Manager: true\n" in text
    assert "  ClusterID: cluster1\n  Managers: 3\n  Nodes: 5\n" in text
    assert "   Heartbeat Tick: 1\n   Election Tick: 10\n" in text
    assert "   Heartbeat Period: 5 seconds\n" in text
    assert text.endswith(
        "  Node Address: 198.18.0.11\n  Manager Addresses:\n   198.18.0.11:2377\n"
        "   198.18.0.12:2377\n Name: shoal-h1\n"
    )
    assert shoal("info", "--format", "{{.Swarm.NodeID}}").stdout == "node1id\n"


def test_version(shoal: Shoal) -> None:
    text = shoal("version").stdout
    assert text.startswith("Client:\n Version:           0.1.0\n API version:       1.47\n")
    assert "\nServer:\n Engine:\n  Version:          0.1.0\n" in text
    assert "  API version:      1.47 (minimum version 1.24)\n" in text
    assert shoal("version", "--format", "{{.Server.ApiVersion}}").stdout == "1.47\n"


def test_unreachable_daemon_is_one_line() -> None:
    def refuse(host: str | None) -> object:
        raise Unavailable(f"Cannot connect to the shoal daemon at {host}. Is the daemon running?")

    result = CliRunner().invoke(cli, ["-H", "unix:///nowhere.sock", "service", "ls"],
                                obj=CliContext(client_factory=refuse))  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == (
        "Cannot connect to the shoal daemon at unix:///nowhere.sock. "
        "Is the daemon running?\n"
    )


def test_real_client_to_a_missing_socket(tmp_path: object) -> None:
    result = CliRunner().invoke(cli, ["-H", f"unix://{tmp_path}/none.sock", "node", "ls"])
    assert result.exit_code == 1
    assert "Cannot connect to the shoal daemon" in result.stderr
    assert "Traceback" not in result.output


def test_transport_errors_are_one_line(shoal: Shoal, daemon: FakeDaemon) -> None:
    def broken(_: object) -> Reply:
        raise Hangup  # the daemon closes the connection without an answer

    daemon.overrides[("GET", "/services")] = broken
    result = shoal("service", "ls")
    assert result.exit_code == 1
    assert result.stderr == "Remote end closed connection without response\n"


def test_bad_host_and_daemon_command() -> None:
    result = CliRunner().invoke(cli, ["-H", "ftp://x", "info"])
    assert result.exit_code == 1
    assert result.stderr.startswith("unsupported host 'ftp://x'")
    result = CliRunner().invoke(cli, ["daemon", "-H", "ftp://x"])
    assert result.exit_code == 1
    assert "invalid host 'ftp://x'" in result.stderr


def test_version_flag_and_python_m() -> None:
    assert CliRunner().invoke(cli, ["--version"]).stdout == "shoal version 0.1.0\n"
    env = {**os.environ, "SHOAL_HOST": "unix:///nonexistent/shoal.sock"}
    done = subprocess.run([sys.executable, "-m", "shoal", "--version"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)  # fmt: skip
    assert done.stdout == "shoal version 0.1.0\n"


def test_lazy_commands_are_listed() -> None:
    help_text = CliRunner().invoke(cli, ["--help"]).stdout
    for name in ("whoami", "lab", "service", "swarm", "node", "daemon", "info", "version"):
        assert f"  {name} " in help_text


def test_usage_errors_exit_1(shoal: Shoal, daemon: FakeDaemon) -> None:
    result = shoal("service", "create")
    assert result.exit_code == 1
    assert "Missing argument 'IMAGE'" in result.stderr
    assert daemon.requests == []


def test_the_cli_default_host_is_the_clients() -> None:
    from shoal import client
    from shoal.cli import main

    assert main.DEFAULT_HOST == client.DEFAULT_HOST


def test_the_process_ends_without_teardown_only_when_nothing_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import atexit
    import threading

    from shoal.cli import main

    ended: list[int] = []
    monkeypatch.setattr(os, "_exit", ended.append)
    monkeypatch.setattr(atexit, "_ncallbacks", lambda: 0)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    main._exit_now(None)
    main._exit_now(3)
    main._exit_now("a message")  # Python prints it: the usual exit
    assert ended == [0, 3]
    monkeypatch.setattr(atexit, "_ncallbacks", lambda: 1)  # e.g. logging's
    main._exit_now(0)
    monkeypatch.setattr(atexit, "_ncallbacks", lambda: 0)
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    main._exit_now(0)
    assert ended == [0, 3]


def test_exit_status_and_output_of_the_process() -> None:
    env = {**os.environ, "SHOAL_HOST": "unix:///nonexistent/shoal.sock"}
    done = subprocess.run([sys.executable, "-m", "shoal", "service", "ls"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "Cannot connect to the shoal daemon at unix:///nonexistent/shoal.sock. "
        "Is the daemon running?\n"
    )
    argv = [sys.executable, "-m", "shoal", "service", "ls", "--bad"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 125  # docker's status for a flag it does not know
    assert done.stderr == (
        "unknown flag: --bad\n\nUsage:  shoal service ls [OPTIONS]\n\n"
        "Run 'shoal service ls --help' for more information\n"
    )
