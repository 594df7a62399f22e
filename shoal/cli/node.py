"""`shoal node ls|inspect|ps|update|promote|demote|rm`, with docker's calls and output."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from shoal.cli.common import (
    ErrorList,
    Resolver,
    compact,
    echo,
    error_text,
    filters_param,
    inspect_objects,
    node_reference,
    parsed,
    pretty_each,
)
from shoal.cli.context import ApiClient, CliContext, pass_cli
from shoal.cli.format import Row, natural_key, pretty, render
from shoal.cli.opts import parse_filters, parse_label, to_map
from shoal.cli.pretty import node_pretty
from shoal.cli.tasks import print_tasks
from shoal.errors import ShoalError

__all__ = ["NODE_FORMAT", "NODE_HEADERS", "node", "node_rows"]

NODE_FORMAT = (
    "table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}"
    "\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}"
)
NODE_HEADERS = {
    "ID": "ID",
    "Self": "",
    "Hostname": "HOSTNAME",
    "Status": "STATUS",
    "Availability": "AVAILABILITY",
    "ManagerStatus": "MANAGER STATUS",
    "EngineVersion": "ENGINE VERSION",
    "TLSStatus": "TLS STATUS",
}
_RAW = (
    "node_id: {{.ID}}\\nhostname: {{.Hostname}}\\nstatus: {{.Status}}\\n"
    "availability: {{.Availability}}\\nmanager_status: {{.ManagerStatus}}\\n"
)


def _tls_status(node: Mapping[str, Any], swarm: Mapping[str, Any]) -> str:
    keys = ("TrustRoot", "CertIssuerSubject", "CertIssuerPublicKey")
    mine = (node.get("Description") or {}).get("TLSInfo") or {}
    cluster = (swarm.get("Cluster") or {}).get("TLSInfo") or {}
    if not any(mine.get(k) for k in keys) or not any(cluster.get(k) for k in keys):
        return "Unknown"
    return "Ready" if all(mine.get(k) == cluster.get(k) for k in keys) else "Needs Rotation"


def node_rows(nodes: list[Mapping[str, Any]], swarm: Mapping[str, Any]) -> list[Row]:
    """`node ls` rows (docker's nodeContext fields), sorted by hostname."""
    rows = []
    for n in sorted(nodes, key=lambda n: natural_key(_hostname(n))):
        manager = n.get("ManagerStatus") or {}
        reachability = pretty(str(manager.get("Reachability") or ""))
        reach = "Leader" if manager.get("Leader") else reachability
        engine = (n.get("Description") or {}).get("Engine") or {}
        row = {
            "Availability": pretty(str((n.get("Spec") or {}).get("Availability") or "")),
            "EngineVersion": str(engine.get("EngineVersion") or ""),
            "Hostname": _hostname(n),
            "ID": str(n.get("ID") or ""),
            "ManagerStatus": pretty(reach),
            "Self": bool(n.get("ID")) and n.get("ID") == swarm.get("NodeID"),
            "Status": pretty(str((n.get("Status") or {}).get("State") or "")),
            "TLSStatus": _tls_status(n, swarm),
        }
        rows.append(Row(row))
    return rows


def _hostname(n: Mapping[str, Any]) -> str:
    return str((n.get("Description") or {}).get("Hostname") or "")


@click.group()
def node() -> None:
    """Manage Swarm nodes."""


@node.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided"
)
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@pass_cli
def ls(cli: CliContext, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List nodes in the swarm."""
    params = {"filters": filters_param(filters)}
    client = cli.get_client()
    nodes = client.get("/nodes", params=params) or []
    swarm: Mapping[str, Any] = {}
    if nodes and not quiet:
        swarm = (client.get("/info") or {}).get("Swarm") or {}
    fmt = fmt or "table"
    if fmt == "table" and quiet:
        fmt = "{{.ID}}"
    elif fmt == "raw":
        fmt = "node_id: {{.ID}}" if quiet else _RAW
    echo(render(node_rows(nodes, swarm), fmt, NODE_FORMAT, NODE_HEADERS))


@node.command()
@click.argument("refs", nargs=-1, required=True, metavar="self|NODE [NODE...]")
@click.option("-f", "--format", "fmt", default="", help="Format output using a custom template")
@click.option(
    "--pretty", "as_pretty", is_flag=True, help="Print the information in a human friendly format"
)
@pass_cli
def inspect(cli: CliContext, refs: tuple[str, ...], fmt: str, as_pretty: bool) -> None:
    """Display detailed information on one or more nodes."""
    if fmt.startswith("pretty") and fmt != "pretty":
        raise ShoalError("cannot supply extra formatting options to the pretty template")
    client = cli.get_client()

    def fetch(ref: str) -> Any:
        return client.get(f"/nodes/{node_reference(client, ref)}")

    if as_pretty or fmt == "pretty":
        pretty_each(refs, fetch, lambda n: node_pretty(n, cli.now()))
        return
    inspect_objects(refs, fetch, fmt)


@node.command()
@click.argument("refs", nargs=-1, metavar="[NODE...]")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided"
)
@click.option("--format", "fmt", default="", help="Pretty-print tasks using a Go template")
@click.option("--no-resolve", is_flag=True, help="Do not map IDs to Names")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only display task IDs")
@pass_cli
def ps(
    cli: CliContext, refs: tuple[str, ...], filters: tuple[str, ...], fmt: str,
    no_resolve: bool, no_trunc: bool, quiet: bool,
) -> None:  # fmt: skip
    """List tasks running on one or more nodes, defaults to current node."""
    filters_param(filters)  # refuse a bad filter before any request
    client = cli.get_client()
    tasks: list[Any] = []
    errors: list[str] = []
    for ref in refs or ("self",):
        try:
            node_id = client.get(f"/nodes/{node_reference(client, ref)}")["ID"]
            wanted = parse_filters(filters)
            wanted.setdefault("node", {})[node_id] = True
            tasks.extend(client.get("/tasks", params={"filters": compact(wanted)}) or [])
        except ShoalError as exc:
            errors.append(error_text(exc))
    if not errors or tasks:
        print_tasks(Resolver(client, no_resolve), tasks, cli.now(), fmt, quiet, no_trunc)
    if errors:
        raise ErrorList(errors)


def _update_nodes(
    client: ApiClient, refs: tuple[str, ...], merge: Callable[[dict[str, Any]], bool],
    done: Callable[[str, dict[str, Any]], str],
) -> None:  # fmt: skip
    """GET each node, edit its spec, POST it back with its version (skipped if no change)."""
    for ref in refs:
        current = client.get(f"/nodes/{node_reference(client, ref)}")
        spec = dict(current.get("Spec") or {})
        if spec.get("Labels") is None:
            spec["Labels"] = {}
        if not merge(spec):
            echo(done(ref, current))
            continue
        version = (current.get("Version") or {}).get("Index", 0)
        client.post(f"/nodes/{current['ID']}/update", spec, params={"version": version})
        echo(done(ref, current))


@node.command()
@click.argument("ref", metavar="NODE")
@click.option("--availability", help='Availability of the node ("active", "pause", "drain")')
@click.option("--label-add", multiple=True, help='Add or update a node label ("key=value")')
@click.option("--label-rm", multiple=True, help="Remove a node label if exists")
@click.option("--role", help='Role of the node ("worker", "manager")')
@pass_cli
def update(
    cli: CliContext, ref: str, availability: str | None, label_add: tuple[str, ...],
    label_rm: tuple[str, ...], role: str | None,
) -> None:  # fmt: skip
    """Update a node."""
    # --availability and --role go as given, as docker's: dockerd refuses a bad one
    # (`invalid Availability: "sleep"`, exit 1)
    labels = to_map(parsed("--label-add", label_add, parse_label))

    def merge(spec: dict[str, Any]) -> bool:
        if role is not None:
            spec["Role"] = role
        if availability is not None:
            spec["Availability"] = availability
        spec["Labels"].update(labels)
        for key in label_rm:
            if key not in spec["Labels"]:
                raise ShoalError(f"key {key} doesn't exist in node's labels")
            del spec["Labels"][key]
        return True

    _update_nodes(cli.get_client(), (ref,), merge, lambda r, _: f"{r}\n")


def _set_role(role: str) -> Callable[[dict[str, Any]], bool]:
    def merge(spec: dict[str, Any]) -> bool:
        if spec.get("Role") == role:
            return False
        spec["Role"] = role
        return True

    return merge


@node.command()
@click.argument("refs", nargs=-1, required=True, metavar="NODE [NODE...]")
@pass_cli
def promote(cli: CliContext, refs: tuple[str, ...]) -> None:
    """Promote one or more nodes to manager in the swarm."""

    def done(ref: str, current: dict[str, Any]) -> str:
        if (current.get("Spec") or {}).get("Role") == "manager":
            return f"Node {current.get('ID')} is already a manager.\n"
        return f"Node {ref} promoted to a manager in the swarm.\n"

    _update_nodes(cli.get_client(), refs, _set_role("manager"), done)


@node.command()
@click.argument("refs", nargs=-1, required=True, metavar="NODE [NODE...]")
@pass_cli
def demote(cli: CliContext, refs: tuple[str, ...]) -> None:
    """Demote one or more nodes from manager in the swarm."""

    def done(ref: str, current: dict[str, Any]) -> str:
        if (current.get("Spec") or {}).get("Role") == "worker":
            return f"Node {current.get('ID')} is already a worker.\n"
        return f"Manager {ref} demoted in the swarm.\n"

    _update_nodes(cli.get_client(), refs, _set_role("worker"), done)


@node.command("rm")
@click.argument("refs", nargs=-1, required=True, metavar="NODE [NODE...]")
@click.option("-f", "--force", is_flag=True, help="Force remove a node from the swarm")
@pass_cli
def rm(cli: CliContext, refs: tuple[str, ...], force: bool) -> None:
    """Remove one or more nodes from the swarm."""
    client = cli.get_client()
    errors = []
    for ref in refs:
        try:
            client.delete(
                f"/nodes/{node_reference(client, ref)}", params={"force": "1"} if force else None
            )
            echo(f"{ref}\n")
        except ShoalError as exc:
            errors.append(error_text(exc))
    if errors:
        raise ErrorList(errors)
