"""Click commands of the workloads (`shoal whoami`), registered by the CLI's main group."""

from __future__ import annotations

import click

__all__ = ["whoami"]


@click.command("whoami")
@click.option("--port", "port", type=int, default=80, show_default=True, help="HTTP port")
@click.option("--udp-port", "udp_port", type=int, default=None, help="also answer UDP here")
@click.option("--host", default="0.0.0.0", show_default=True, help="address to listen on")
@click.option("--proxy-protocol", "proxy_protocol", is_flag=True,
              help="expect a PROXY protocol v2 header first; report the client it names")
@click.option("--drain-timeout", "drain_timeout", type=click.FloatRange(0, 3600), default=5.0,
              show_default=True,
              help="on SIGTERM, seconds to let keep-alive connections take a last answer")
def whoami(
    port: int, udp_port: int | None, host: str, proxy_protocol: bool, drain_timeout: float
) -> None:
    """Answer HTTP (and UDP) with which task, service and node served the request."""
    from shoal.workloads.whoami import main

    try:
        main(port, udp_port, host, proxy_protocol, drain_timeout)
    except OSError as exc:
        raise click.ClickException(f"whoami: {exc}") from exc
