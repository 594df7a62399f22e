"""`service logs`: multiplexed frames, docker's `web.1.<task>@node    | ` prefixes."""

from __future__ import annotations

import pytest

from shoal.cli.logs import FrameParser, parse_details, split_line
from shoal.errors import ShoalError

from .fakes import FakeDaemon, Reply, Shoal

DETAILS = ",".join(
    f"com.docker.swarm.{kind}.id={ident}"
    for kind, ident in (("node", "node1id"), ("service", "webid"), ("task", "task1"))
)


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_frames_split_across_chunks() -> None:
    data = frame(1, b"hello\n") + frame(2, b"oops\n") + frame(1, b"")
    parser = FrameParser()
    got = []
    for i in range(0, len(data), 3):
        got.extend(parser.feed(data[i : i + 3]))
    assert got == [(1, b"hello\n"), (2, b"oops\n"), (1, b"")]
    assert parser.pending == 0


def test_error_frame_aborts() -> None:
    with pytest.raises(ShoalError, match="error from daemon in stream: boom"):
        FrameParser().feed(frame(3, b"boom"))


def test_details_and_lines() -> None:
    assert parse_details("a=1,b%3Dc=x+y") == {"a": "1", "b=c": "x y"}
    stamp, details, msg = split_line("2025-01-01T00:00:00.000000001Z a=1 hello world\n", True)
    assert (stamp, details, msg) == ("2025-01-01T00:00:00.000000001Z", {"a": "1"}, "hello world\n")
    with pytest.raises(ShoalError, match="invalid context"):
        split_line("nodetails", False)


@pytest.fixture
def logged(daemon: FakeDaemon) -> FakeDaemon:
    daemon.add_service(
        "web", ID="webid", Spec={"Name": "web", "Mode": {"Replicated": {"Replicas": 12}}}
    )
    daemon.add_node("node1id", "shoal-h1")
    daemon.tasks = [{"ID": "task1" + "x" * 20, "Slot": 3, "ServiceID": "webid"}]
    daemon.logs = frame(1, f"{DETAILS} GET / 200\n".encode()) + frame(
        2, f"{DETAILS} warning: slow\n".encode()
    )
    return daemon


def test_service_logs(shoal: Shoal, logged: FakeDaemon) -> None:
    result = shoal("service", "logs", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == "web.3.task1xxxxxxx@shoal-h1     | GET / 200\n"
    assert result.stderr == "web.3.task1xxxxxxx@shoal-h1     | warning: slow\n"
    call = logged.requests_to("GET", "/services/web/logs")[0]
    assert call.params == {"details": "1", "stderr": "1", "stdout": "1", "tail": "all"}
    # names are looked up once per task
    assert len(logged.requests_to("GET", "/nodes/node1id")) == 1


def test_service_logs_options(shoal: Shoal, logged: FakeDaemon) -> None:
    logged.logs = frame(1, f"2025-01-01T00:00:00Z {DETAILS},extra=1 hi\n".encode())
    result = shoal(
        "service", "logs", "-f", "-t", "--tail", "5", "--no-task-ids", "--details", "web"
    )
    assert result.stdout == "2025-01-01T00:00:00Z web.3@shoal-h1     | extra=1 hi\n"
    call = logged.requests_to("GET", "/services/web/logs")[0]
    assert call.params == {
        "details": "1", "follow": "1", "stderr": "1", "stdout": "1", "tail": "5", "timestamps": "1",
    }  # fmt: skip


def test_raw_logs_are_not_prefixed(shoal: Shoal, logged: FakeDaemon) -> None:
    logged.logs = frame(1, b"plain line\n")
    result = shoal("service", "logs", "--raw", "web")
    assert result.stdout == "plain line\n"
    assert "details" not in logged.requests_to("GET", "/services/web/logs")[0].params


def test_task_logs_and_unknown_target(shoal: Shoal, logged: FakeDaemon) -> None:
    logged.overrides[("GET", "/tasks/task1xxxxxxxxxxxxxxxxxxxx/logs")] = Reply(
        200, content=frame(1, f"{DETAILS} from the task\n".encode())
    )
    result = shoal("service", "logs", "task1xxxxxxxxxxxxxxxxxxxx")
    assert result.stdout == "web.3.task1xxxxxxx@shoal-h1    | from the task\n"
    result = shoal("service", "logs", "nothing")
    assert result.exit_code == 1
    assert result.stderr == "no such task or service: nothing\n"
