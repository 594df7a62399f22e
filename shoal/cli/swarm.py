"""`shoal swarm init|join|join-token|leave|update`: the calls and output of `docker swarm`."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import click

from shoal.cli.common import echo
from shoal.cli.context import ApiClient, CliContext, pass_cli
from shoal.cli.durations import parse_duration
from shoal.cli.opts import FlagError, parse_int, parse_uint
from shoal.errors import InvalidArgument
from shoal.manager.controlapi.raft_spec import (
    DEFAULT_ELECTION_TICK,
    DEFAULT_HEARTBEAT_TICK,
    MAX_TICK,
    MIN_TICK,
)

__all__ = ["swarm"]

_PORT = 2377


def _listen_addr(value: str) -> str:
    """docker's NodeAddrOption: default port 2377, default host 0.0.0.0."""
    host, sep, port = value.rpartition(":") if not value.endswith("]") else (value, "", "")
    if not sep:
        host, port = value, ""
    return f"{host or '0.0.0.0'}:{port or _PORT}"


def _flag(flag: str, value: str | None, parse: Callable[[str], Any]) -> Any:
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise FlagError(flag, value, str(exc)) from None


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = parse_uint(text)
        if value < low:
            raise ValueError(f"must be at least {low}")
        return value

    return parse


def _raft_tick(text: str) -> int:
    value = parse_duration(text)
    if not MIN_TICK <= value <= MAX_TICK:
        raise ValueError("must be between 10ms and 10s")
    return value


_RAFT_FLAGS = ("raft_tick", "election_tick", "heartbeat_tick")


def _check_ticks(spec: dict[str, Any], opts: dict[str, Any]) -> None:
    """ElectionTick >= 2 x HeartbeatTick in the merged spec (the daemon checks it too;
    see shoal/manager/controlapi/raft_spec.py), when a timing flag is given."""
    if all(opts.get(flag) is None for flag in _RAFT_FLAGS):
        return
    raft = spec.get("Raft") or {}
    election = raft.get("ElectionTick") or DEFAULT_ELECTION_TICK
    heartbeat = raft.get("HeartbeatTick") or DEFAULT_HEARTBEAT_TICK
    if election < 2 * heartbeat:
        raise InvalidArgument(
            f"--election-tick ({election}) must be at least twice --heartbeat-tick ({heartbeat})"
        )


def _availability(value: str | None) -> str:
    if value is None:
        return ""
    if value.lower() not in ("active", "pause", "drain"):
        raise InvalidArgument(
            f'invalid availability "{value}", only active, pause and drain are supported'
        )
    return value.lower()


def _spec_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in (
        click.option("--task-history-limit", help="Task history retention limit (default 5)"),
        click.option("--dispatcher-heartbeat", help="Dispatcher heartbeat period (ns|us|ms|s|m|h)"),
        click.option(
            "--cert-expiry", help="Validity period for node certificates (ns|us|ms|s|m|h)"
        ),
        click.option("--snapshot-interval", help="Number of log entries between Raft snapshots"),
        click.option("--max-snapshots", help="Number of additional Raft snapshots to retain"),
        click.option(
            "--raft-tick", help="Raft tick interval, 10ms to 10s (ns|us|ms|s|m|h) (default 100ms)"
        ),
        click.option(
            "--election-tick",
            help="Raft ticks without a leader before an election (default 10, >= 2x heartbeat)",
        ),
        click.option("--heartbeat-tick", help="Raft ticks between leader heartbeats (default 1)"),
    ):
        f = decorator(f)
    return f


def _merge_spec(spec: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """docker's mergeSwarmSpec: only the options given change the spec."""
    values = {
        ("Orchestration", "TaskHistoryRetentionLimit"): _flag(
            "--task-history-limit", opts.get("task_history_limit"), parse_int
        ),
        ("Dispatcher", "HeartbeatPeriod"): _flag(
            "--dispatcher-heartbeat", opts.get("dispatcher_heartbeat"), parse_duration
        ),
        ("CAConfig", "NodeCertExpiry"): _flag(
            "--cert-expiry", opts.get("cert_expiry"), parse_duration
        ),
        ("Raft", "SnapshotInterval"): _flag(
            "--snapshot-interval", opts.get("snapshot_interval"), _at_least(1)
        ),
        ("Raft", "KeepOldSnapshots"): _flag(
            "--max-snapshots", opts.get("max_snapshots"), parse_uint
        ),
        ("Raft", "TickInterval"): _flag("--raft-tick", opts.get("raft_tick"), _raft_tick),
        ("Raft", "ElectionTick"): _flag("--election-tick", opts.get("election_tick"), _at_least(2)),
        ("Raft", "HeartbeatTick"): _flag(
            "--heartbeat-tick", opts.get("heartbeat_tick"), _at_least(1)
        ),
    }
    for (section, key), value in values.items():
        if value is not None:
            if not isinstance(spec.get(section), dict):
                spec[section] = {}
            spec[section][key] = value
    _check_ticks(spec, opts)
    return spec


def _empty_spec() -> dict[str, Any]:
    """A zero Go swarm.Spec as docker marshals it."""
    return {
        "Labels": None,
        "Orchestration": {},
        "Raft": {"ElectionTick": 0, "HeartbeatTick": 0},
        "Dispatcher": {},
        "CAConfig": {},
        "TaskDefaults": {},
        "EncryptionConfig": {"AutoLockManagers": False},
    }


def _join_command(client: ApiClient, node_id: str, worker: bool, manager: bool) -> str:
    node = client.get(f"/nodes/{node_id}") or {}
    tokens = (client.get("/swarm") or {}).get("JoinTokens") or {}
    status = node.get("ManagerStatus")
    if not status:
        return ""
    text = ""
    for role, wanted in (("worker", worker), ("manager", manager)):
        if wanted:
            token = tokens.get(role.capitalize(), "")
            text += (
                f"To add a {role} to this swarm, run the following command:\n\n"
                f"    shoal swarm join --token {token} {status.get('Addr', '')}\n\n"
            )
    return text


@click.group()
def swarm() -> None:
    """Manage Swarm."""


@swarm.command()
@click.option(
    "--advertise-addr", default="", help="Advertised address (format: <ip|interface>[:port])"
)
@click.option(
    "--listen-addr", default="0.0.0.0:2377", help="Listen address (format: <ip|interface>[:port])"
)
@click.option(
    "--data-path-addr", default="", help="Address or interface to use for data path traffic"
)
@click.option("--data-path-port", help="Port number to use for data path traffic (1024 - 49151)")
@click.option("--default-addr-pool", multiple=True, help="Default address pool in CIDR format")
@click.option(
    "--default-addr-pool-mask-length", default="24", help="Default address pool subnet mask length"
)
@click.option(
    "--force-new-cluster", is_flag=True, help="Force create a new cluster from current state"
)
@click.option("--availability", help='Availability of the node ("active", "pause", "drain")')
@click.option("--autolock", is_flag=True, help="Enable manager autolocking")
@_spec_options
@pass_cli
def init(cli: CliContext, /, **opts: Any) -> None:
    """Initialize a swarm."""
    pools = []
    for value in opts["default_addr_pool"]:
        try:
            pools.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            raise FlagError(
                "--default-addr-pool", value, f"invalid CIDR address: {value}"
            ) from None
    spec = _merge_spec(_empty_spec(), opts)
    if opts["autolock"]:
        spec["EncryptionConfig"]["AutoLockManagers"] = True
    body = {
        "ListenAddr": _listen_addr(opts["listen_addr"]),
        "AdvertiseAddr": opts["advertise_addr"],
        "DataPathAddr": opts["data_path_addr"],
        "DataPathPort": _flag(
            "--data-path-port", opts["data_path_port"], lambda v: parse_uint(v, 32)
        )
        or 0,
        "ForceNewCluster": opts["force_new_cluster"],
        "Spec": spec,
        "AutoLockManagers": opts["autolock"],
        "Availability": _availability(opts["availability"]),
        "DefaultAddrPool": pools,
        "SubnetSize": _flag(
            "--default-addr-pool-mask-length",
            opts["default_addr_pool_mask_length"],
            lambda v: parse_uint(v, 32),
        ),
    }
    client = cli.get_client()
    node_id = client.post("/swarm/init", body)
    echo(f"Swarm initialized: current node ({node_id}) is now a manager.\n\n")
    echo(_join_command(client, str(node_id), worker=True, manager=False))
    echo(
        "To add a manager to this swarm, run 'shoal swarm join-token manager' "
        "and follow the instructions.\n"
    )


@swarm.command()
@click.argument("remote", metavar="HOST:PORT")
@click.option("--token", required=True, help="Token for entry into the swarm")
@click.option(
    "--advertise-addr", default="", help="Advertised address (format: <ip|interface>[:port])"
)
@click.option(
    "--listen-addr", default="0.0.0.0:2377", help="Listen address (format: <ip|interface>[:port])"
)
@click.option(
    "--data-path-addr", default="", help="Address or interface to use for data path traffic"
)
@click.option("--availability", help='Availability of the node ("active", "pause", "drain")')
@pass_cli
def join(cli: CliContext, /, remote: str, **opts: Any) -> None:
    """Join a swarm as a node and/or manager."""
    body = {
        "ListenAddr": _listen_addr(opts["listen_addr"]),
        "AdvertiseAddr": opts["advertise_addr"],
        "DataPathAddr": opts["data_path_addr"],
        "RemoteAddrs": [remote],
        "JoinToken": opts["token"],
        "Availability": _availability(opts["availability"]),
    }
    client = cli.get_client()
    client.post("/swarm/join", body)
    info = client.get("/info") or {}
    role = "manager" if (info.get("Swarm") or {}).get("ControlAvailable") else "worker"
    echo(f"This node joined a swarm as a {role}.\n")


@swarm.command("join-token")
@click.argument("role")
@click.option("-q", "--quiet", is_flag=True, help="Only display token")
@click.option("--rotate", is_flag=True, help="Rotate join token")
@pass_cli
def join_token(cli: CliContext, role: str, quiet: bool, rotate: bool) -> None:
    """Manage join tokens (ROLE is worker or manager)."""
    if role not in ("worker", "manager"):
        raise InvalidArgument("unknown role " + role)
    client = cli.get_client()
    if rotate:
        current = client.get("/swarm") or {}
        params = {
            "rotateManagerToken": str(role == "manager").lower(),
            "rotateManagerUnlockKey": "false",
            "rotateWorkerToken": str(role == "worker").lower(),
            "version": (current.get("Version") or {}).get("Index", 0),
        }
        client.post("/swarm/update", current.get("Spec") or {}, params=params)
        if not quiet:
            echo(f"Successfully rotated {role} join token.\n\n")
    tokens = (client.get("/swarm") or {}).get("JoinTokens") or {}
    if quiet:
        echo(str(tokens.get(role.capitalize(), "")) + "\n")
        return
    node_id = str(((client.get("/info") or {}).get("Swarm") or {}).get("NodeID") or "")
    echo(_join_command(client, node_id, role == "worker", role == "manager"))


@swarm.command()
@click.option(
    "-f", "--force", is_flag=True, help="Force this node to leave the swarm, ignoring warnings"
)
@pass_cli
def leave(cli: CliContext, force: bool) -> None:
    """Leave the swarm."""
    cli.get_client().post("/swarm/leave", params={"force": "1"} if force else None)
    echo("Node left the swarm.\n")


@swarm.command()
@click.option("--autolock", type=click.BOOL, help="Change manager autolocking setting (true|false)")
@_spec_options
@pass_cli
def update(cli: CliContext, /, autolock: bool | None, **opts: Any) -> None:
    """Update the swarm."""
    client = cli.get_client()
    current: dict[str, Any] = client.get("/swarm") or {}
    spec = _merge_spec(dict(current.get("Spec") or {}), opts)
    if autolock is not None:
        if not isinstance(spec.get("EncryptionConfig"), dict):
            spec["EncryptionConfig"] = {}
        spec["EncryptionConfig"]["AutoLockManagers"] = autolock
    params = {
        "rotateManagerToken": "false",
        "rotateManagerUnlockKey": "false",
        "rotateWorkerToken": "false",
        "version": (current.get("Version") or {}).get("Index", 0),
    }
    client.post("/swarm/update", spec, params=params)
    echo("Swarm updated.\n")
