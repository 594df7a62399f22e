"""`shoal daemon`: run this host's shoal daemon in the foreground (like dockerd).

The daemon itself lives in `shoal.daemon`; it is imported only when this command runs, so
the rest of the CLI works without it. Flags are checked before that import, so a bad value
is refused with docker's flag error even where the daemon cannot run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from shoal.cli.context import get_cli
from shoal.cli.durations import parse_duration
from shoal.cli.opts import FlagError
from shoal.client import DEFAULT_HOST
from shoal.errors import ShoalError

__all__ = ["check_registry_host", "daemon", "parse_drain_delay"]


def check_registry_host(value: str) -> None:
    """`--insecure-registry` takes a registry host (`HOST[:PORT]`), not a URL or a CIDR."""
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?", value):
        raise FlagError("--insecure-registry", value, "expected HOST[:PORT]")


def check_metrics_addr(value: str) -> None:
    _, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"invalid address {value!r}: expected HOST:PORT",
                                 param_hint="--metrics-addr")


def parse_drain_delay(value: str) -> float:
    """Seconds of a `--drain-delay` value (a Go duration: `2s`, `500ms`, `0`); never negative."""
    try:
        ns = parse_duration(value)
    except ValueError as exc:
        raise FlagError("--drain-delay", value, str(exc)) from None
    if ns < 0:
        raise FlagError("--drain-delay", value, "duration cannot be negative")
    return ns / 1e9


@click.command()
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/var/lib/shoal"),
    show_default=True,
    help="Root directory of persistent shoal state",
)
@click.option(
    "-H",
    "--host",
    "hosts",
    multiple=True,
    metavar="HOST",
    help=f"Socket(s) to listen on: unix:///path or tcp://ip:port (repeatable) "
    f"[default: {DEFAULT_HOST}]",
)
@click.option("--hostname", help="Node hostname in the swarm (default: the machine's)")
@click.option(
    "--mesh",
    type=click.Choice(["kernel", "userspace"]),
    default="kernel",
    show_default=True,
    help="Routing mesh data plane",
)
@click.option(
    "--drain-delay",
    default="3s",
    show_default=True,
    metavar="DURATION",
    help="How long a task being stopped stays out of the mesh before it is killed "
    "(ns|us|ms|s|m|h)",
)
@click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    metavar="HOST:PORT",
    help="Registry spoken to over plain HTTP / without TLS verification (repeatable)",
)
@click.option("--metrics-addr", default="", metavar="HOST:PORT",
              help="Serve Prometheus /metrics and the dashboard at this address")
@click.option("-D", "--debug", is_flag=True, help="Enable debug logging")
@click.pass_context
def daemon(
    ctx: click.Context,
    data_root: Path,
    hosts: tuple[str, ...],
    hostname: str | None,
    mesh: str,
    drain_delay: str,
    insecure_registries: tuple[str, ...],
    metrics_addr: str,
    debug: bool,
) -> None:
    """Run the shoal daemon (as root, on every host)."""
    for host in hosts:
        if not host.startswith(("unix://", "tcp://")):
            raise ShoalError(f"invalid host {host!r}: use unix:///path or tcp://ip:port")
    delay = parse_drain_delay(drain_delay)
    for registry in insecure_registries:
        check_registry_host(registry)
    if metrics_addr:
        check_metrics_addr(metrics_addr)
    try:
        from shoal.daemon import DaemonOptions, run_daemon
    except ImportError as exc:
        raise ShoalError(f"the shoal daemon is not available: {exc}") from exc
    run: Any = get_cli(ctx).run_daemon or run_daemon
    run(
        DaemonOptions(
            data_root=data_root,
            hosts=list(hosts) or [DEFAULT_HOST],
            hostname=hostname,
            mesh=mesh,
            debug=debug,
            drain_delay=delay,
            insecure_registries=list(insecure_registries),
            metrics_addr=metrics_addr,
        )
    )
