"""`swarm init|update` Raft flags: --snapshot-interval, --max-snapshots, --raft-tick,
--election-tick, --heartbeat-tick; refused values send nothing; `info` shows the tick."""

from __future__ import annotations

import pytest

from .fakes import FakeDaemon, Shoal


def _init_raft(shoal: Shoal, daemon: FakeDaemon, *flags: str) -> dict[str, object]:
    daemon.add_node("node1id", "h1", ManagerStatus={"Leader": True, "Addr": "127.0.0.1:2377"})
    result = shoal("swarm", "init", "--advertise-addr", "127.0.0.1", *flags)
    assert result.exit_code == 0, result.output
    return daemon.requests_to("POST", "/swarm/init")[0].body["Spec"]["Raft"]  # type: ignore[no-any-return]


def test_init_sends_the_raft_flags(shoal: Shoal, daemon: FakeDaemon) -> None:
    raft = _init_raft(
        shoal, daemon, "--snapshot-interval", "5000", "--max-snapshots", "2",
        "--raft-tick", "50ms", "--election-tick", "20", "--heartbeat-tick", "2",
    )  # fmt: skip
    assert raft == {
        "ElectionTick": 20, "HeartbeatTick": 2, "SnapshotInterval": 5000,
        "KeepOldSnapshots": 2, "TickInterval": 50_000_000,
    }  # fmt: skip


def test_init_without_flags_sends_docker_zeroes(shoal: Shoal, daemon: FakeDaemon) -> None:
    assert _init_raft(shoal, daemon) == {"ElectionTick": 0, "HeartbeatTick": 0}


def test_update_changes_only_the_given_raft_fields(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.swarm["Spec"]["Raft"] = {
        "SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500,
        "ElectionTick": 10, "HeartbeatTick": 1, "TickInterval": 100_000_000,
    }  # fmt: skip
    result = shoal("swarm", "update", "--raft-tick", "1s", "--election-tick", "4")
    assert result.stdout == "Swarm updated.\n", result.output
    update = daemon.requests_to("POST", "/swarm/update")[0]
    assert update.params["version"] == "7"
    assert update.body["Raft"] == {
        "SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500,
        "ElectionTick": 4, "HeartbeatTick": 1, "TickInterval": 1_000_000_000,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--raft-tick", "5ms"], 'invalid argument "5ms" for "--raft-tick" flag: must be '
                                 "between 10ms and 10s"),
        (["--raft-tick", "11s"], "must be between 10ms and 10s"),
        (["--raft-tick", "100"], 'time: missing unit in duration "100"'),
        (["--election-tick", "1"], 'invalid argument "1" for "--election-tick" flag: must be '
                                   "at least 2"),
        (["--heartbeat-tick", "0"], '"--heartbeat-tick" flag: must be at least 1'),
        (["--heartbeat-tick", "-1"], "invalid syntax"),
        (["--snapshot-interval", "0"], '"--snapshot-interval" flag: must be at least 1'),
        (["--election-tick", "5", "--heartbeat-tick", "3"],
         "--election-tick (5) must be at least twice --heartbeat-tick (3)"),
        (["--heartbeat-tick", "6"],  # against the default election tick
         "--election-tick (10) must be at least twice --heartbeat-tick (6)"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["init", "update"])
def test_bad_raft_flags_send_nothing(
    shoal: Shoal, daemon: FakeDaemon, command: str, flags: list[str], message: str
) -> None:
    result = shoal("swarm", command, *flags)
    # docker: 125 for a flag value its parser refuses, 1 for what the command refuses
    assert result.exit_code == (125 if result.stderr.startswith("invalid argument") else 1)
    assert message in result.stderr
    assert [r for r in daemon.requests if r.method == "POST"] == []


def test_update_checks_ticks_against_the_current_spec(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.swarm["Spec"]["Raft"] = {"ElectionTick": 4, "HeartbeatTick": 2}
    result = shoal("swarm", "update", "--heartbeat-tick", "3")
    assert "--election-tick (4) must be at least twice --heartbeat-tick (3)" in result.stderr
    assert daemon.requests_to("POST", "/swarm/update") == []


def test_info_shows_the_tick_interval(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.info = {
        "Swarm": {
            "NodeID": "node1id", "LocalNodeState": "active", "ControlAvailable": True,
            "Cluster": {"ID": "c1", "Spec": {"Raft": {
                "SnapshotInterval": 10000, "KeepOldSnapshots": 0, "HeartbeatTick": 1,
                "ElectionTick": 10, "TickInterval": 100_000_000,
            }}},
        },
    }  # fmt: skip
    text = shoal("info").stdout
    assert (
        "  Raft:\n   Snapshot Interval: 10000\n   Number of Old Snapshots to Retain: 0\n"
        "   Heartbeat Tick: 1\n   Election Tick: 10\n   Tick Interval: 100ms\n"
    ) in text
