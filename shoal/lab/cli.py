"""`shoal lab ...`: the click group of the lab, registered by the main CLI.

Every command needs root. SHOAL_LAB_TAG (undocumented on purpose) selects a tagged lab
instead of the default one, so that tests of these commands never touch a user's lab.
"""

from __future__ import annotations

import os

import click

from shoal.errors import ShoalError
from shoal.lab.lab import Lab, status_table

__all__ = ["lab"]


def _lab() -> Lab:
    if os.geteuid() != 0:
        raise ShoalError("shoal lab needs root (it creates network namespaces and cgroups)")
    return Lab(os.environ.get("SHOAL_LAB_TAG", ""))


@click.group("lab")
def lab() -> None:
    """A multi-host shoal cluster on this machine, out of network namespaces."""


@lab.command("up")
@click.option("--nodes", default=1, show_default=True, help="number of hosts (h1..hN)")
@click.option("--managers", default=1, show_default=True, help="how many of them are managers")
def up(nodes: int, managers: int) -> None:
    """Build the fabric and hosts, start a daemon on each, `swarm init` on h1."""
    the_lab = _lab()
    click.echo(f"lab: building {nodes} host(s) on fabric 198.18.0.0/24, starting daemons...")
    the_lab.up(nodes, managers)
    click.echo("lab: swarm initialised on h1 (198.18.0.11)")
    if nodes > 1:
        click.echo(f"lab: h2..h{nodes} joined the swarm over 198.18.0.11:2377")
    if managers > 1:
        click.echo(f"lab: h1..h{managers} are managers (one Raft cluster)")
    click.echo(status_table(the_lab.status()))


@lab.command("down")
@click.option("--purge", is_flag=True, help="also remove the data roots and daemon logs")
def down(purge: bool) -> None:
    """Remove the lab: processes, namespaces, cgroups, sockets (idempotent)."""
    the_lab = _lab()
    deleted = the_lab.down(purge=purge)
    click.echo(f"lab: down ({len(deleted)} namespace(s) removed)")
    if not purge and the_lab.layout.data_dir.exists():
        click.echo(f"lab: daemon logs kept in {the_lab.layout.data_dir}/h*/daemon.log")


@lab.command(
    "exec",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(host: str, command: tuple[str, ...]) -> None:
    """Run COMMAND on HOST (h1..hN or client): `shoal lab exec h1 -- shoal node ls`."""
    the_lab = _lab()
    argv = list(command)
    if argv[:1] == ["--"]:  # click keeps the separator once HOST has been read
        argv = argv[1:]
    argv = the_lab.exec_argv(host, argv)
    os.execvpe(argv[0], argv, the_lab.exec_env(host))


@lab.command("ls")
def ls() -> None:
    """List the hosts of the lab."""
    click.echo(status_table(_lab().status()))


@lab.command("stop")
@click.argument("host")
def stop(host: str) -> None:
    """Power HOST off: its daemon and tasks die, its network goes."""
    _lab().stop(host)
    click.echo(f"lab: {host} powered off")


@lab.command("start")
@click.argument("host")
def start(host: str) -> None:
    """Power HOST on: its daemon comes back on the same data root."""
    _lab().start(host)
    click.echo(f"lab: {host} running")


@lab.command("cut")
@click.argument("host")
def cut(host: str) -> None:
    """Take HOST's fabric link down."""
    _lab().cut(host)
    click.echo(f"lab: {host} cut off the fabric")


@lab.command("heal")
@click.argument("host")
def heal(host: str) -> None:
    """Bring HOST's fabric link back up."""
    _lab().heal(host)
    click.echo(f"lab: {host} back on the fabric")


@lab.command("demo")
@click.option("--nodes", default=5, show_default=True, help="number of hosts")
@click.option(
    "--managers", type=int, default=None, help="how many are managers [default: 3, at most --nodes]"
)
@click.option("--keep", is_flag=True, help="leave the lab up at the end")
def demo(nodes: int, managers: int | None, keep: bool) -> None:
    """The routing mesh story: a 3-replica `web` service answering on every host."""
    from shoal.lab.demo import run_demo

    run_demo(_lab(), nodes=nodes, keep=keep, managers=managers)


@lab.command("block")
@click.argument("host")
@click.argument("port_proto", metavar="PORT/PROTO")
def block(host: str, port_proto: str) -> None:
    """Play the security group: HOST drops what arrives on PORT/PROTO (e.g. 4789/udp)."""
    from shoal.lab import firewall

    port, proto = firewall.parse_port_proto(port_proto)
    the_lab = _lab()
    if host not in the_lab.hosts():
        raise ShoalError(f"no lab host {host} (hosts: {', '.join(the_lab.hosts())})")
    firewall.block(the_lab.layout, host, port, proto)
    click.echo(f"lab: {host} drops {port}/{proto}")


@lab.command("unblock")
@click.argument("host")
@click.argument("port_proto", metavar="[PORT/PROTO]", required=False)
def unblock(host: str, port_proto: str | None) -> None:
    """Reopen PORT/PROTO on HOST (without one: everything `block` closed there)."""
    from shoal.lab import firewall

    the_lab = _lab()
    if port_proto is None:
        firewall.unblock(the_lab.layout, host)
        click.echo(f"lab: {host} drops nothing")
        return
    port, proto = firewall.parse_port_proto(port_proto)
    firewall.unblock(the_lab.layout, host, port, proto)
    click.echo(f"lab: {host} accepts {port}/{proto} again")
