"""`shoal volume ls|inspect|create|rm`: a node's local named volumes, with docker's calls,
flags and output (volumes are node-local: the daemon asked is the node whose volumes these
are)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from shoal.cli.common import (
    ErrorList,
    echo,
    error_text,
    filters_param,
    inspect_objects,
    parsed,
)
from shoal.cli.context import CliContext, pass_cli
from shoal.cli.format import Row, render
from shoal.cli.opts import parse_label, to_map
from shoal.errors import APIError, ShoalError

__all__ = ["VOLUME_FORMAT", "volume", "volume_rows"]

VOLUME_FORMAT = "table {{.Driver}}\t{{.Name}}"
VOLUME_HEADERS = {
    "Driver": "DRIVER", "Name": "VOLUME NAME", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
    "Labels": "LABELS", "CreatedAt": "CREATED AT",
}


def volume_rows(volumes: list[Mapping[str, Any]]) -> list[Row]:
    rows = []
    for v in sorted(volumes, key=lambda v: str(v.get("Name") or "")):
        labels = v.get("Labels") or {}
        rows.append(Row({
            "Driver": str(v.get("Driver") or ""),
            "Name": str(v.get("Name") or ""),
            "Scope": str(v.get("Scope") or ""),
            "Mountpoint": str(v.get("Mountpoint") or ""),
            "Labels": ",".join(f"{k}={val}" for k, val in sorted(labels.items())),
            "CreatedAt": str(v.get("CreatedAt") or ""),
        }))
    return rows


@click.group()
def volume() -> None:
    """Manage a node's volumes."""


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names")
@click.option("-f", "--filter", "filters", multiple=True,
              help="Provide filter values (e.g. 'dangling=true')")
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@pass_cli
def ls(cli: CliContext, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List volumes."""
    found = cli.get_client().get("/volumes", params={"filters": filters_param(filters)}) or {}
    fmt = fmt or "table"
    if quiet and fmt == "table":
        fmt = "{{.Name}}"
    echo(render(volume_rows(found.get("Volumes") or []), fmt, VOLUME_FORMAT, VOLUME_HEADERS))


@volume.command()
@click.argument("names", nargs=-1, required=True, metavar="VOLUME [VOLUME...]")
@click.option("-f", "--format", "fmt", default="", help="Format output using a custom template")
@pass_cli
def inspect(cli: CliContext, names: tuple[str, ...], fmt: str) -> None:
    """Display detailed information on one or more volumes."""
    client = cli.get_client()
    inspect_objects(names, lambda name: client.get(f"/volumes/{name}"), fmt)


@volume.command()
@click.argument("name", required=False, default="", metavar="[VOLUME]")
@click.option("-d", "--driver", default="local", show_default=True,
              help="Specify volume driver name")
@click.option("--label", "labels", multiple=True, help="Set metadata for a volume")
@click.option("-o", "--opt", "opts", multiple=True, help="Set driver specific options")
@pass_cli
def create(
    cli: CliContext, name: str, driver: str, labels: tuple[str, ...], opts: tuple[str, ...]
) -> None:
    """Create a volume."""
    body = {
        "Name": name, "Driver": driver,
        "Labels": to_map(parsed("--label", labels, parse_label)),
        "DriverOpts": to_map(list(opts)),
    }
    made = cli.get_client().post("/volumes/create", body) or {}
    echo(f"{made.get('Name', '')}\n")


@volume.command("rm")
@click.argument("names", nargs=-1, required=True, metavar="VOLUME [VOLUME...]")
@click.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes")
@pass_cli
def rm(cli: CliContext, names: tuple[str, ...], force: bool) -> None:
    """Remove one or more volumes. You cannot remove a volume that is in use."""
    client = cli.get_client()
    errors = []
    for name in names:
        try:
            client.delete(f"/volumes/{name}", params={"force": "1"} if force else None)
            echo(f"{name}\n")
        except APIError as exc:
            if not (force and exc.status == 404):
                errors.append(error_text(exc))
        except ShoalError as exc:
            errors.append(error_text(exc))
    if errors:
        raise ErrorList(errors)
