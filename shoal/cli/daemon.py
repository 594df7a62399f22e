"""`shoal daemon`: run this host's shoal daemon in the foreground (like dockerd).

The daemon itself lives in `shoal.daemon`; it is imported only when this command runs, so
the rest of the CLI works without it.
"""

from __future__ import annotations

from pathlib import Path

import click

from shoal.client import DEFAULT_HOST
from shoal.errors import ShoalError

__all__ = ["daemon"]


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
@click.option("-D", "--debug", is_flag=True, help="Enable debug logging")
def daemon(
    data_root: Path, hosts: tuple[str, ...], hostname: str | None, mesh: str, debug: bool
) -> None:
    """Run the shoal daemon (as root, on every host)."""
    for host in hosts:
        if not host.startswith(("unix://", "tcp://")):
            raise ShoalError(f"invalid host {host!r}: use unix:///path or tcp://ip:port")
    try:
        from shoal.daemon import DaemonOptions, run_daemon
    except ImportError as exc:
        raise ShoalError(f"the shoal daemon is not available: {exc}") from exc
    run_daemon(
        DaemonOptions(
            data_root=data_root,
            hosts=list(hosts) or [DEFAULT_HOST],
            hostname=hostname,
            mesh=mesh,
            debug=debug,
        )
    )
