"""`shoal daemon`: its flags reach DaemonOptions; bad values are refused before it starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shoal.cli.context import CliContext
from shoal.cli.daemon import parse_drain_delay
from shoal.cli.main import cli
from shoal.cli.opts import FlagError


def run(*args: str) -> tuple[int, str, list[Any]]:
    started: list[Any] = []
    result = CliRunner().invoke(
        cli, ["daemon", *args], obj=CliContext(run_daemon=started.append)
    )
    return result.exit_code, result.output, started


def test_drain_delay_defaults_to_three_seconds(tmp_path: Path) -> None:
    code, _, started = run("--data-root", str(tmp_path))
    assert code == 0
    assert started[0].drain_delay == 3.0 and started[0].data_root == tmp_path


@pytest.mark.parametrize(
    ("value", "seconds"), [("500ms", 0.5), ("0", 0.0), ("1m30s", 90.0), ("1.5s", 1.5)]
)
def test_drain_delay_takes_go_durations(tmp_path: Path, value: str, seconds: float) -> None:
    code, _, started = run("--data-root", str(tmp_path), "--drain-delay", value)
    assert code == 0 and started[0].drain_delay == seconds


@pytest.mark.parametrize(
    ("value", "reason"),
    [("2", 'time: missing unit in duration "2"'), ("soon", 'time: invalid duration "soon"'),
     ("-1s", "duration cannot be negative")],
)
def test_bad_drain_delay_is_refused_and_starts_nothing(
    tmp_path: Path, value: str, reason: str
) -> None:
    code, output, started = run("--data-root", str(tmp_path), "--drain-delay", value)
    assert code == 125 and started == []  # cobra: a flag it cannot parse
    assert f'invalid argument "{value}" for "--drain-delay" flag: {reason}' in output


def test_parse_drain_delay() -> None:
    assert parse_drain_delay("250ms") == 0.25
    with pytest.raises(FlagError):
        parse_drain_delay("2x")


def test_metrics_addr_is_passed_on_and_bad_ones_refused(tmp_path: Path) -> None:
    code, _, started = run("--data-root", str(tmp_path), "--metrics-addr", "127.0.0.1:9323")
    assert code == 0 and started[0].metrics_addr == "127.0.0.1:9323"
    code, _, started = run("--data-root", str(tmp_path))
    assert code == 0 and started[0].metrics_addr == ""
    code, output, started = run("--data-root", str(tmp_path), "--metrics-addr", "9323")
    assert code != 0 and started == [] and "invalid address '9323'" in output
