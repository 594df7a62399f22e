"""`shoal network ls|inspect|create|rm`, with docker's calls, flags and output.

One difference from docker: `create`'s driver defaults to `overlay` (docker's is `bridge`,
which a swarm-only engine refuses), so `shoal network create NAME` just works.
`inspect -v` asks for the verbose view (`?verbose=true`): on `ingress`, Docker's `Services`
and `Peers` plus `ShoalMesh`, the routing mesh as the node asked sees it.
"""

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
from shoal.cli.format import Row, render, truncate_id
from shoal.cli.opts import parse_label, to_map
from shoal.errors import APIError, ShoalError

__all__ = ["NETWORK_FORMAT", "NETWORK_HEADERS", "create_body", "network", "network_rows"]

NETWORK_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NETWORK_HEADERS = {
    "ID": "NETWORK ID",
    "Name": "NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "IPv4": "IPV4",
    "IPv6": "IPV6",
    "Internal": "INTERNAL",
    "Labels": "LABELS",
    "CreatedAt": "CREATED AT",
}


def network_rows(networks: list[Mapping[str, Any]], no_trunc: bool = False) -> list[Row]:
    """`network ls` rows (docker's networkContext fields), sorted by name."""
    rows = []
    for n in sorted(networks, key=lambda n: str(n.get("Name") or "")):
        ident = str(n.get("Id") or "")
        labels = n.get("Labels") or {}
        rows.append(Row({
            "ID": ident if no_trunc else truncate_id(ident),
            "Name": str(n.get("Name") or ""),
            "Driver": str(n.get("Driver") or ""),
            "Scope": str(n.get("Scope") or ""),
            "IPv4": str(n.get("EnableIPv4", True)).lower(),
            "IPv6": str(bool(n.get("EnableIPv6"))).lower(),
            "Internal": str(bool(n.get("Internal"))).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "CreatedAt": str(n.get("Created") or ""),
        }))
    return rows


@click.group()
def network() -> None:
    """Manage networks."""


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Provide filter values (e.g. 'driver=overlay')"
)
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@pass_cli
def ls(cli: CliContext, quiet: bool, filters: tuple[str, ...], fmt: str, no_trunc: bool) -> None:
    """List networks."""
    params = {"filters": filters_param(filters)}
    networks = cli.get_client().get("/networks", params=params) or []
    fmt = fmt or "table"
    if quiet and fmt == "table":
        fmt = "{{.ID}}"
    echo(render(network_rows(networks, no_trunc), fmt, NETWORK_FORMAT, NETWORK_HEADERS))


@network.command()
@click.argument("refs", nargs=-1, required=True, metavar="NETWORK [NETWORK...]")
@click.option("-f", "--format", "fmt", default="", help="Format output using a custom template")
@click.option("-v", "--verbose", is_flag=True, help="Verbose output for diagnostics")
@pass_cli
def inspect(cli: CliContext, refs: tuple[str, ...], fmt: str, verbose: bool) -> None:
    """Display detailed information on one or more networks."""
    client = cli.get_client()
    params = {"verbose": "true"} if verbose else None
    inspect_objects(refs, lambda ref: client.get(f"/networks/{ref}", params=params), fmt)


def _ipam_config(
    subnets: tuple[str, ...], gateways: tuple[str, ...], ranges: tuple[str, ...],
    aux: dict[str, str],
) -> list[dict[str, Any]]:  # fmt: skip
    """docker's consolidateIpam: each gateway and range belongs to the one subnet given
    with it (one subnet: all of them; several: matched by position, like docker requires
    when it cannot tell)."""
    if (gateways or ranges or aux) and not subnets:
        raise ShoalError("every ip-range or gateway must have a corresponding subnet")
    if len(gateways) > len(subnets) or len(ranges) > len(subnets):
        raise ShoalError("every ip-range or gateway must have a corresponding subnet")
    out: list[dict[str, Any]] = []
    for i, subnet in enumerate(subnets):
        entry: dict[str, Any] = {"Subnet": subnet}
        if i < len(ranges):
            entry["IPRange"] = ranges[i]
        if i < len(gateways):
            entry["Gateway"] = gateways[i]
        if aux and i == 0:
            entry["AuxiliaryAddresses"] = aux
        out.append(entry)
    return out


def create_body(name: str, opts: Mapping[str, Any]) -> dict[str, Any]:
    """The `POST /networks/create` body the docker CLI sends for these flags."""
    labels = to_map(parsed("--label", opts.get("label", ()), parse_label))
    # docker's MapOpts: `-o mtu` is {"mtu": ""}, as the docker CLI sends it
    options = to_map(list(opts.get("opt", ())))
    ipam_opts = to_map(list(opts.get("ipam_opt", ())))
    aux = to_map(parsed("--aux-address", opts.get("aux_address", ()), _key_value))
    return {
        "Name": name,
        "Driver": opts.get("driver") or "overlay",
        "Scope": opts.get("scope") or "",
        "EnableIPv6": bool(opts.get("ipv6")),
        "IPAM": {
            "Driver": opts.get("ipam_driver") or "default",
            "Options": ipam_opts,
            "Config": _ipam_config(tuple(opts.get("subnet", ())), tuple(opts.get("gateway", ())),
                                   tuple(opts.get("ip_range", ())), aux),
        },
        "Internal": bool(opts.get("internal")),
        "Attachable": bool(opts.get("attachable")),
        "Ingress": bool(opts.get("ingress")),
        "ConfigOnly": False,
        "ConfigFrom": None,
        "Options": options,
        "Labels": labels,
    }


def _key_value(value: str) -> str:
    if "=" not in value:
        raise ValueError(f"invalid key=value pair: {value!r}")
    return value


@network.command()
@click.argument("name", metavar="NETWORK")
@click.option("-d", "--driver", default="overlay", show_default=True,
              help="Driver to manage the Network")
@click.option("--scope", default="", help="Control the network's scope")
@click.option("--attachable", is_flag=True, help="Enable manual container attachment")
@click.option("--internal", is_flag=True, help="Restrict external access to the network")
@click.option("--ingress", is_flag=True, help="Create swarm routing-mesh network")
@click.option("--ipv6", is_flag=True, help="Enable or disable IPv6 networking")
@click.option("--subnet", multiple=True, help="Subnet in CIDR format that represents a "
              "network segment")
@click.option("--gateway", multiple=True, help="IPv4 or IPv6 Gateway for the master subnet")
@click.option("--ip-range", multiple=True, help="Allocate container ip from a sub-range")
@click.option("--aux-address", multiple=True, help="Auxiliary IPv4 or IPv6 addresses used by "
              "Network driver")
@click.option("--ipam-driver", default="default", show_default=True, help="IP Address "
              "Management Driver")
@click.option("--ipam-opt", multiple=True, help="Set IPAM driver specific options")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options")
@click.option("--label", multiple=True, help="Set metadata on a network")
@pass_cli
def create(cli: CliContext, /, name: str, **opts: Any) -> None:
    """Create a network."""
    body = create_body(name, opts)
    created = cli.get_client().post("/networks/create", body) or {}
    if created.get("Warning"):
        echo(f"{created['Warning']}\n", err=True)
    echo(f"{created.get('Id', '')}\n")


@network.command("rm")
@click.argument("refs", nargs=-1, required=True, metavar="NETWORK [NETWORK...]")
@click.option("-f", "--force", is_flag=True, help="Do not error if the network does not exist")
@pass_cli
def rm(cli: CliContext, refs: tuple[str, ...], force: bool) -> None:
    """Remove one or more networks."""
    client = cli.get_client()
    errors = []
    for ref in refs:
        try:
            ident = (client.get(f"/networks/{ref}") or {}).get("Id") or ref
            client.delete(f"/networks/{ident}")
            echo(f"{ref}\n")
        except APIError as exc:
            if not (force and exc.status == 404):
                errors.append(error_text(exc))
        except ShoalError as exc:
            errors.append(error_text(exc))
    if errors:
        raise ErrorList(errors)

