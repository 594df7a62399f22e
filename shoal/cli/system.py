"""`shoal info` and `shoal version`: GET /info and GET /version, printed like docker's."""

from __future__ import annotations

import platform
from typing import Any

import click

from shoal import __version__
from shoal.cli.common import echo
from shoal.cli.context import CliContext, pass_cli
from shoal.cli.durations import format_duration, human_duration
from shoal.cli.format import bytes_size, tabwrite
from shoal.cli.templates import parse
from shoal.client import API_VERSION
from shoal.errors import ShoalError

__all__ = ["info", "info_text", "version"]


def _go(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _line(out: list[str], label: str, *values: Any) -> None:
    out.append(" ".join([label, *(_go(v) for v in values)]) + "\n")


def _swarm_lines(swarm: dict[str, Any], out: list[str]) -> None:
    state = swarm.get("LocalNodeState") or ""
    if state in ("inactive", "locked"):
        return
    _line(out, "  NodeID:", swarm.get("NodeID") or "")
    if swarm.get("Error"):
        _line(out, "  Error:", swarm["Error"])
    manager = bool(swarm.get("ControlAvailable"))
    _line(out, "  Is Manager:", manager)
    cluster = swarm.get("Cluster")
    if cluster and manager and not swarm.get("Error") and state != "error":
        spec = cluster.get("Spec") or {}
        _line(out, "  ClusterID:", cluster.get("ID") or "")
        _line(out, "  Managers:", swarm.get("Managers") or 0)
        _line(out, "  Nodes:", swarm.get("Nodes") or 0)
        if cluster.get("DefaultAddrPool") is not None:
            pools = "".join(f"{p}  " for p in cluster["DefaultAddrPool"])
            _line(out, "  Default Address Pool:", pools)
            _line(out, "  SubnetSize:", cluster.get("SubnetSize") or 0)
        if cluster.get("DataPathPort"):
            _line(out, "  Data Path Port:", cluster["DataPathPort"])
        orchestration = spec.get("Orchestration") or {}
        raft = spec.get("Raft") or {}
        _line(out, "  Orchestration:")
        _line(
            out,
            "   Task History Retention Limit:",
            orchestration.get("TaskHistoryRetentionLimit") or 0,
        )
        _line(out, "  Raft:")
        _line(out, "   Snapshot Interval:", raft.get("SnapshotInterval") or 0)
        if raft.get("KeepOldSnapshots") is not None:
            _line(out, "   Number of Old Snapshots to Retain:", raft["KeepOldSnapshots"])
        _line(out, "   Heartbeat Tick:", raft.get("HeartbeatTick") or 0)
        _line(out, "   Election Tick:", raft.get("ElectionTick") or 0)
        if raft.get("TickInterval"):  # shoal's extension: what a tick is
            _line(out, "   Tick Interval:", format_duration(raft["TickInterval"]))
        heartbeat = (spec.get("Dispatcher") or {}).get("HeartbeatPeriod") or 0
        ca = spec.get("CAConfig") or {}
        _line(out, "  Dispatcher:")
        _line(out, "   Heartbeat Period:", human_duration(heartbeat / 1e9))
        _line(out, "  CA Configuration:")
        _line(out, "   Expiry Duration:", human_duration((ca.get("NodeCertExpiry") or 0) / 1e9))
        _line(out, "   Force Rotate:", ca.get("ForceRotate") or 0)
        autolock = (spec.get("EncryptionConfig") or {}).get("AutoLockManagers", False)
        _line(out, "  Autolock Managers:", bool(autolock))
        _line(out, "  Root Rotation In Progress:", bool(cluster.get("RootRotationInProgress")))
    _line(out, "  Node Address:", swarm.get("NodeAddr") or "")
    managers = sorted(str(m.get("Addr") or "") for m in swarm.get("RemoteManagers") or [])
    if managers:
        _line(out, "  Manager Addresses:")
        out.extend(f"   {addr}\n" for addr in managers)


_SERVER_FIELDS = (
    ("Kernel Version", "KernelVersion"),
    ("Operating System", "OperatingSystem"),
    ("OSType", "OSType"),
    ("Architecture", "Architecture"),
    ("CPUs", "NCPU"),
    ("Name", "Name"),
    ("ID", "ID"),
    ("Docker Root Dir", "DockerRootDir"),
    ("Debug Mode", "Debug"),
)


def info_text(data: dict[str, Any]) -> str:
    """docker info's text for a GET /info answer (client part, server part, Swarm section)."""
    out = ["Client:\n"]
    _line(out, " Version:   ", __version__)
    out.append("\nServer:\n")
    if "Containers" in data:
        _line(out, " Containers:", data["Containers"])
        for label in ("Running", "Paused", "Stopped"):
            _line(out, f"  {label}:", data.get(f"Containers{label}") or 0)
    if data.get("ServerVersion"):
        _line(out, " Server Version:", data["ServerVersion"])
    swarm = data.get("Swarm") or {}
    _line(out, " Swarm:", swarm.get("LocalNodeState") or "")
    _swarm_lines(swarm, out)
    for label, key in _SERVER_FIELDS:
        if data.get(key) not in (None, ""):
            _line(out, f" {label}:", data[key])
    if data.get("MemTotal"):
        _line(out, " Total Memory:", bytes_size(float(data["MemTotal"])))
    return "".join(out)


@click.command()
@click.option("-f", "--format", "fmt", default="", help="Format the output using a Go template")
@pass_cli
def info(cli: CliContext, fmt: str) -> None:
    """Display system-wide information."""
    data = cli.get_client().get("/info") or {}
    if fmt:
        text = "{{json .}}" if fmt == "json" else fmt
        echo(parse(text).execute(data) + "\n")
        return
    echo(info_text(data))


_VERSION_TEMPLATE = """Client:
 Version:\t{{.Client.Version}}
 API version:\t{{.Client.APIVersion}}
 Python version:\t{{.Client.PythonVersion}}
 OS/Arch:\t{{.Client.Os}}/{{.Client.Arch}}
{{- with .Server}}

Server:{{with .Platform}}{{if .Name}} {{.Name}}{{end}}{{end}}
{{- range $c := .Components}}
 {{$c.Name}}:
  Version:\t{{$c.Version}}
  {{- if eq $c.Name "Engine"}}{{with $d := $c.Details}}
  API version:\t{{index $d "ApiVersion"}} (minimum version {{index $d "MinAPIVersion"}})
  OS/Arch:\t{{index $d "Os"}}/{{index $d "Arch"}}{{end}}
  {{- else}}{{range $k, $v := $c.Details}}
  {{$k}}:\t{{$v}}{{end}}{{end}}
{{- else}}
 Engine:
  Version:\t{{.Version}}
  API version:\t{{.ApiVersion}} (minimum version {{.MinAPIVersion}})
  OS/Arch:\t{{.Os}}/{{.Arch}}
{{- end}}
{{- end}}
"""


@click.command()
@click.option("-f", "--format", "fmt", default="", help="Format the output using a Go template")
@pass_cli
def version(cli: CliContext, fmt: str) -> None:
    """Show the shoal version information."""
    machine = platform.machine().lower()
    data: dict[str, Any] = {
        "Client": {
            "Version": __version__,
            "APIVersion": API_VERSION,
            "PythonVersion": platform.python_version(),
            "Os": platform.system().lower(),
            "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
        },
        "Server": None,
    }
    failure: ShoalError | None = None
    try:
        data["Server"] = cli.get_client().get("/version")
    except ShoalError as exc:
        failure = exc
    if fmt:
        echo(parse("{{json .}}" if fmt == "json" else fmt).execute(data) + "\n")
    else:
        echo(tabwrite(parse(_VERSION_TEMPLATE).execute(data), minwidth=20, padding=1))
    if failure is not None:
        raise failure
