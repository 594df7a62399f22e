"""`shoal doctor` and `shoal node check NODE`: can this node reach the others on every
cluster port? The daemon runs the probes (GET /shoal/doctor); this prints its table, or the
report as JSON with `--format json`. Exit status 1 when any port is blocked."""

from __future__ import annotations

import json

import click

from shoal.cli.common import echo
from shoal.cli.context import CliContext, pass_cli

__all__ = ["check", "doctor"]


def _run(cli: CliContext, fmt: str, timeout: float, node: str | None) -> None:
    if fmt not in ("", "table", "json"):
        raise click.BadParameter(
            f"unsupported format {fmt!r} (table or json)", param_hint="--format"
        )
    import msgspec

    from shoal.doctor.model import DoctorReport, render_table

    params: dict[str, str] = {"timeout": str(timeout)}
    if node:
        params["node"] = node
    raw = cli.get_client().get("/shoal/doctor", params=params)
    report = msgspec.convert(raw, DoctorReport)
    if fmt == "json":
        echo(json.dumps(raw, indent=2) + "\n")
    else:
        echo(render_table(report) + "\n")
    if report.blocked:
        raise click.exceptions.Exit(1)


_format = click.option("--format", "fmt", default="", help="Output format: table (default) or json")
_timeout = click.option(
    "--timeout", default=2.0, show_default=True, type=click.FloatRange(0, 30, min_open=True),
    help="Seconds each probe waits for an answer",
)


@click.command()
@_format
@_timeout
@pass_cli
def doctor(cli: CliContext, fmt: str, timeout: float) -> None:
    """Probe every other node on 2377/tcp, 7946/tcp+udp, 4789/udp and the overlay MTU."""
    _run(cli, fmt, timeout, None)


@click.command("check")
@click.argument("node")
@_format
@_timeout
@pass_cli
def check(cli: CliContext, node: str, fmt: str, timeout: float) -> None:
    """Probe NODE (ID, ID prefix or hostname) from this node on every cluster port."""
    _run(cli, fmt, timeout, node)
