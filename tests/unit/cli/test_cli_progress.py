"""Convergence progress: docker's updaters on fake task lists, its display, and the wait loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shoal.cli.progress import GlobalProgress, ProgressWriter, ReplicatedProgress
from shoal.errors import ShoalError

from .fakes import FakeClock, FakeDaemon, Recorded, Shoal


def task(
    slot: int, state: str, desired: str = "running", node: str = "n1", err: str = ""
) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state}
    if err:
        status["Err"] = err
    return {
        "ID": f"t{slot}{state}",
        "Slot": slot,
        "NodeID": node,
        "DesiredState": desired,
        "Status": status,
    }


SERVICE = {"ID": "webid", "Spec": {"Mode": {"Replicated": {"Replicas": 3}}}}


class Lines:
    """A non-TTY writer's output, one entry per line."""

    def __init__(self) -> None:
        self.text = ""

    def __call__(self, text: str) -> None:
        self.text += text

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


def test_replicated_progress_counts_running_slots() -> None:
    out = Lines()
    updater = ReplicatedProgress(ProgressWriter(out, tty=False))
    tasks = [task(1, "running"), task(2, "starting"), task(3, "pending")]
    assert updater.update(SERVICE, tasks, {"n1"}, rollback=False) is False
    # docker off a terminal: the slots' blank first lines, no line for a task's state
    # (it carries a progress bar)
    assert out.lines == [
        "overall progress: 0 out of 3 tasks",
        "1/3:  ",
        "2/3:  ",
        "3/3:  ",
        "overall progress: 1 out of 3 tasks",
    ]
    tasks = [task(1, "running"), task(2, "running"), task(3, "running")]
    assert updater.update(SERVICE, tasks, {"n1"}, rollback=False) is True
    assert out.lines[-1] == "overall progress: 3 out of 3 tasks"


def test_slot_choice_ignores_shut_down_tasks_and_down_nodes() -> None:
    updater = ReplicatedProgress(ProgressWriter(Lines(), tty=False))
    tasks = [
        task(1, "running", desired="shutdown"),  # the old task of slot 1, being replaced
        task(1, "starting"),
        task(2, "running", node="down-node"),  # ignored: its node is down
        task(3, "running"),
        {**task(3, "orphaned"), "ID": "x"},  # no rank: ignored
    ]
    assert updater.update(SERVICE, tasks, {"n1"}, rollback=False) is False
    tasks[1] = task(1, "running")
    tasks[2] = task(2, "running")
    assert updater.update(SERVICE, tasks, {"n1"}, rollback=False) is True


def test_task_errors_are_shown_truncated() -> None:
    out = Lines()
    updater = ReplicatedProgress(ProgressWriter(out, tty=False))
    updater.update(
        SERVICE, [task(1, "rejected", err="no suitable node " + "x" * 100)], {"n1"}, False
    )
    assert "1/3: no suitable node " + "x" * 57 + "…" in out.lines


def test_global_progress() -> None:
    out = Lines()
    updater = GlobalProgress(ProgressWriter(out, tty=False))
    service = {"ID": "g", "Spec": {"Mode": {"Global": {}}}}
    assert updater.update(service, [], {"n1"}, False) is False
    assert out.lines == ["overall progress: waiting for new tasks"]
    tasks = [task(0, "running", node="n1"), task(0, "running", node="n2")]
    assert updater.update(service, tasks, {"n1", "n2"}, False) is True
    assert out.lines[-1] == "overall progress: 2 out of 2 tasks"


def test_tty_display_redraws_lines_in_place() -> None:
    out = Lines()
    writer = ProgressWriter(out, tty=True, width=200)
    writer.progress("overall progress", "0 out of 1 tasks")
    writer.progress("1/1", "running  ", 9, 9)
    writer.progress("overall progress", "1 out of 1 tasks")
    bar = "[" + "=" * 50 + ">] "
    assert out.text == (
        "\n\x1b[1A\x1b[2K\roverall progress: 0 out of 1 tasks \r\x1b[1B"
        f"\n\x1b[1A\x1b[2K\r1/1: running   {bar}\r\x1b[1B"
        "\x1b[2A\x1b[2K\roverall progress: 1 out of 1 tasks \r\x1b[2B"
    )
    narrow = Lines()
    ProgressWriter(narrow, tty=True, width=80).progress("1/1", "starting ", 8, 9)
    assert narrow.text == "\n\x1b[1A\x1b[2K\r1/1: starting  \r\x1b[1B"


def converge_as_polled(daemon: FakeDaemon, service_id: str, after: int) -> None:
    """Tasks run once the CLI has polled `after` times."""
    polls = {"n": 0}

    def step(rec: Recorded) -> None:
        if rec.path == "/tasks":
            polls["n"] += 1
            state = "running" if polls["n"] >= after else "starting"
            daemon.tasks = [
                {"ID": f"t{i}", "ServiceID": service_id, "Slot": i, "NodeID": "n1",
                 "DesiredState": "running", "Status": {"State": state}}
                for i in (1, 2)
            ]  # fmt: skip

    daemon.on_request = step


def test_create_waits_for_convergence(shoal: Shoal, daemon: FakeDaemon, clock: FakeClock) -> None:
    daemon.add_node("n1", "h1")
    converge_as_polled(daemon, "svc0000000000000000000001", after=3)
    shoal.environ = {"SHOAL_CONVERGE_MONITOR": "1"}
    result = shoal("service", "create", "--replicas", "2", "busybox")
    assert result.exit_code == 0, result.output
    # the shape of docker 28.2's output off a terminal (a lab, session 12): every poll's
    # lines, repeats included; the fake clock stands still, so the first wait is monitor + 1
    assert result.stdout.splitlines() == [
        "svc0000000000000000000001",
        "overall progress: 0 out of 2 tasks",
        "1/2:  ",
        "2/2:  ",
        *["overall progress: 0 out of 2 tasks"] * 3,
        "overall progress: 2 out of 2 tasks",
        "verify: Waiting 2 seconds to verify that tasks are stable...",
        *["verify: Waiting 1 seconds to verify that tasks are stable..."] * 4,
        "verify: Service svc0000000000000000000001 converged",
    ]
    tasks_call = daemon.requests_to("GET", "/tasks")[0]
    assert json.loads(tasks_call.params["filters"]) == {
        "service": {"svc0000000000000000000001": True}, "_up-to-date": {"true": True},
    }  # fmt: skip
    assert set(clock.slept) == {0.2}


def test_quiet_waits_silently(shoal: Shoal, daemon: FakeDaemon) -> None:
    service = daemon.add_service("web", {"Mode": {"Replicated": {"Replicas": 2}}})
    daemon.add_node("n1", "h1")
    converge_as_polled(daemon, service["ID"], after=2)
    result = shoal("service", "scale", "web=2")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "web scaled to 2"
    assert result.stdout.splitlines()[-1] == "verify: Service web converged"
    result = shoal("service", "update", "-q", "--force", "web")
    assert result.stdout == "web\n"


def test_paused_update_fails_with_the_task_error(shoal: Shoal, daemon: FakeDaemon) -> None:
    service = daemon.add_service("web")
    daemon.tasks = [{**task(1, "failed", desired="shutdown", err="task: non-zero exit (1)"),
                     "ServiceID": service["ID"]}]  # fmt: skip

    def pause(rec: Recorded) -> None:
        if rec.method == "POST":
            service["UpdateStatus"] = {"State": "paused", "Message": "update paused due to failure"}

    daemon.on_request = pause
    result = shoal("service", "update", "--image", "bad", "web")
    assert result.exit_code == 1
    assert result.stderr == (
        "service update paused: update paused due to failure (task: non-zero exit (1))\n"
    )


def test_completed_update_returns_at_once(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.add_service("web", UpdateStatus={"State": "completed"})
    result = shoal("service", "rollback", "web")
    assert result.exit_code == 0
    assert result.stdout == "web\n"
    assert daemon.requests_to("GET", "/tasks") == []


def test_timeout(shoal: Shoal, daemon: FakeDaemon, clock: FakeClock) -> None:
    daemon.add_service("web")
    result = shoal("service", "update", "--force", "--timeout", "2", "web")
    assert result.exit_code == 1
    assert result.stderr == "timed out waiting for service web to converge\n"
    assert sum(clock.slept) == pytest.approx(2.0, abs=0.25)


def test_replicated_mode_without_count_is_refused_like_docker(
    shoal: Shoal, daemon: FakeDaemon
) -> None:
    daemon.add_service("web", {"Mode": {"Replicated": {}}})
    result = shoal("service", "update", "--force", "web")
    assert result.exit_code == 1
    assert result.stderr == "unrecognized service mode\n"


@pytest.mark.parametrize("tty", [True, False])
def test_tty_choice_comes_from_the_context(shoal: Shoal, daemon: FakeDaemon, tty: bool) -> None:
    service = daemon.add_service("web", {"Mode": {"Replicated": {"Replicas": 2}}})
    daemon.add_node("n1", "h1")
    converge_as_polled(daemon, service["ID"], after=1)
    shoal.tty = tty
    result = shoal("service", "update", "--force", "web")
    assert result.exit_code == 0
    assert ("\x1b[2K" in result.stdout) is tty


def test_wait_error_type() -> None:
    with pytest.raises(ShoalError, match="no replica count"):
        ReplicatedProgress(ProgressWriter(Lines(), False)).update({"Spec": {}}, [], set(), False)
