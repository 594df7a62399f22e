"""`shoal service ls|ps|inspect|logs`: read-only views, docker's calls and output.

What only ps, inspect or logs need is imported inside them (`service ls` starts faster).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from shoal.cli.common import (
    ErrorList,
    Resolver,
    compact,
    echo,
    filters_param,
    inspect_objects,
    node_reference,
    pretty_each,
)
from shoal.cli.context import ApiClient, CliContext, pass_cli
from shoal.cli.format import Row, image_display, natural_key, render, service_ports, truncate_id
from shoal.cli.opts import parse_filters
from shoal.errors import APIError, ShoalError

__all__ = ["SERVICE_FORMAT", "SERVICE_HEADERS", "inspect", "logs", "ls", "ps", "service_rows"]

SERVICE_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}"
SERVICE_HEADERS = {
    "ID": "ID",
    "Name": "NAME",
    "Mode": "MODE",
    "Replicas": "REPLICAS",
    "Image": "IMAGE",
    "Ports": "PORTS",
}
_RAW = (
    "id: {{.ID}}\\nname: {{.Name}}\\nmode: {{.Mode}}\\nreplicas: {{.Replicas}}\\n"
    "image: {{.Image}}\\nports: {{.Ports}}\\n"
)
_MODES = (
    ("Global", "global"),
    ("Replicated", "replicated"),
    ("ReplicatedJob", "replicated job"),
    ("GlobalJob", "global job"),
)


def _replicas(service: Mapping[str, Any], mode: str) -> str:
    status = service.get("ServiceStatus") or {}
    running, desired = status.get("RunningTasks") or 0, status.get("DesiredTasks") or 0
    completed = status.get("CompletedTasks") or 0
    spec = service.get("Spec") or {}
    if mode == "replicated job":
        total = ((spec.get("Mode") or {}).get("ReplicatedJob") or {}).get("TotalCompletions") or 0
        return f"{running}/{desired} ({completed}/{total} completed)"
    if mode == "global job":
        return f"{running}/{desired} ({completed}/{desired + completed} completed)"
    max_per_node = ((spec.get("TaskTemplate") or {}).get("Placement") or {}).get("MaxReplicas")
    if mode == "replicated" and max_per_node:
        return f"{running}/{desired} (max {max_per_node} per node)"
    return f"{running}/{desired}"


def service_rows(services: list[Mapping[str, Any]]) -> list[Row]:
    """`service ls` rows (docker's serviceContext fields), sorted by name."""
    rows = []
    for svc in sorted(services, key=lambda s: natural_key(str((s.get("Spec") or {}).get("Name")))):
        spec = svc.get("Spec") or {}
        modes = spec.get("Mode") or {}
        mode = next((label for key, label in _MODES if modes.get(key) is not None), "")
        image = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image") or ""
        row = {
            "ID": truncate_id(str(svc.get("ID") or "")),
            "Image": image_display(str(image)),
            "Mode": mode,
            "Name": str(spec.get("Name") or ""),
            "Ports": service_ports((svc.get("Endpoint") or {}).get("Ports")),
            "Replicas": _replicas(svc, mode),
        }
        rows.append(Row(row))
    return rows


def _add_status(client: ApiClient, services: list[dict[str, Any]]) -> None:
    """Count tasks like docker does for daemons that do not answer `?status=true`."""
    missing = [s for s in services if s.get("ServiceStatus") is None]
    if not missing:
        return
    wanted = {"service": {s["ID"]: True for s in missing}}
    tasks = client.get("/tasks", params={"filters": compact(wanted)}) or []
    nodes = client.get("/nodes") or []
    active = {n["ID"] for n in nodes if (n.get("Status") or {}).get("State") != "down"}
    for svc in missing:
        mine = [t for t in tasks if t.get("ServiceID") == svc["ID"]]
        running = sum(
            1
            for t in mine
            if t.get("NodeID") in active and (t.get("Status") or {}).get("State") == "running"
        )
        replicated = ((svc.get("Spec") or {}).get("Mode") or {}).get("Replicated")
        if isinstance(replicated, dict):
            desired = int(replicated.get("Replicas") or 0)
        else:
            desired = sum(1 for t in mine if t.get("DesiredState") != "shutdown")
        svc["ServiceStatus"] = {"RunningTasks": running, "DesiredTasks": desired}


@click.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided"
)
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@pass_cli
def ls(cli: CliContext, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List services."""
    params = {"filters": filters_param(filters), "status": None if quiet else "true"}
    client = cli.get_client()
    services = client.get("/services", params=params) or []
    if not quiet:
        _add_status(client, services)
    fmt = fmt or "table"
    if fmt == "table" and quiet:
        fmt = "{{.ID}}"
    elif fmt == "raw":
        fmt = "id: {{.ID}}" if quiet else _RAW
    echo(render(service_rows(services), fmt, SERVICE_FORMAT, SERVICE_HEADERS))


def _service_ids(client: ApiClient, refs: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """docker's `service ps` matching: full ID, then exact name, then a unique ID prefix."""
    by_id = client.get("/services", params={"filters": compact({"id": dict.fromkeys(refs, True)})})
    by_name = client.get(
        "/services", params={"filters": compact({"name": dict.fromkeys(refs, True)})}
    )
    ids: list[str] = []
    missing: list[str] = []
    for ref in refs:
        exact = [s["ID"] for s in by_id or [] if s["ID"] == ref] or [
            s["ID"] for s in by_name or [] if (s.get("Spec") or {}).get("Name") == ref
        ]
        if exact:
            ids.append(exact[0])
            continue
        prefixed = [s["ID"] for s in by_id or [] if str(s["ID"]).startswith(ref)]
        if len(prefixed) > 1:
            raise ShoalError(f"multiple services found with provided prefix: {ref}")
        if prefixed:
            ids.append(prefixed[0])
        else:
            missing.append(f"Error: no such service: {ref}")
    return ids, missing


@click.command()
@click.argument("refs", nargs=-1, required=True, metavar="SERVICE [SERVICE...]")
@click.option("-q", "--quiet", is_flag=True, help="Only display task IDs")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("--no-resolve", is_flag=True, help="Do not map IDs to Names")
@click.option("--format", "fmt", default="", help="Pretty-print tasks using a Go template")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided"
)
@pass_cli
def ps(
    cli: CliContext, refs: tuple[str, ...], quiet: bool, no_trunc: bool, no_resolve: bool,
    fmt: str, filters: tuple[str, ...],
) -> None:  # fmt: skip
    """List the tasks of one or more services."""
    from shoal.cli.tasks import print_tasks

    filters_param(filters)  # refuse a bad filter before any request
    wanted = parse_filters(filters)
    client = cli.get_client()
    ids, missing = _service_ids(client, refs)
    if not ids:
        raise ErrorList(missing)
    for ident in ids:
        wanted.setdefault("service", {})[ident] = True
    if "node" in wanted:
        wanted["node"] = {node_reference(client, ref): True for ref in wanted["node"]}
    tasks = client.get("/tasks", params={"filters": compact(wanted)}) or []
    print_tasks(Resolver(client, no_resolve), tasks, cli.now(), fmt, quiet, no_trunc)
    if missing:
        raise ErrorList(missing)


@click.command()
@click.argument("refs", nargs=-1, required=True, metavar="SERVICE [SERVICE...]")
@click.option("-f", "--format", "fmt", default="", help="Format output using a custom template")
@click.option(
    "--pretty", "as_pretty", is_flag=True, help="Print the information in a human friendly format"
)
@pass_cli
def inspect(cli: CliContext, refs: tuple[str, ...], fmt: str, as_pretty: bool) -> None:
    """Display detailed information on one or more services."""
    from shoal.cli.pretty import service_pretty

    if fmt.startswith("pretty") and fmt != "pretty":
        raise ShoalError("cannot supply extra formatting options to the pretty template")
    client = cli.get_client()

    def fetch(ref: str) -> Any:
        try:
            return client.get(f"/services/{ref}", params={"insertDefaults": "true"})
        except APIError as exc:
            if exc.status == 404:
                raise ShoalError(f"Error: no such service: {ref}") from None  # docker's words
            raise

    if as_pretty or fmt == "pretty":
        pretty_each(refs, fetch, lambda s: service_pretty(s, cli.now()), frame="\n{}\n\n")
        return
    inspect_objects(refs, fetch, fmt)


def _since(value: str, cli: CliContext) -> str:
    """docker's GetTimestamp: a duration ago, an RFC 3339 time, or unix seconds as given."""
    from shoal.cli.durations import parse_duration, parse_time

    try:
        ago = parse_duration(value)
    except ValueError:
        stamp = parse_time(value)
        if stamp is not None:
            return f"{int(stamp.timestamp())}.{stamp.microsecond * 1000:09d}"
        return value
    then = cli.now().timestamp() - ago / 1e9
    return f"{int(then)}.{round((then % 1) * 1e9):09d}"


@click.command()
@click.argument("ref", metavar="SERVICE|TASK")
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option(
    "-n", "--tail", default="all", help="Number of lines to show from the end of the logs"
)
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--since", help='Show logs since timestamp or relative (e.g. "42m")')
@click.option("--details", is_flag=True, help="Show extra details provided to logs")
@click.option("--no-task-ids", is_flag=True, help="Do not include task IDs in output")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("--no-resolve", is_flag=True, help="Do not map IDs to Names in output")
@click.option("--raw", is_flag=True, help="Do not neatly format logs")
@pass_cli
def logs(cli: CliContext, /, ref: str, **opts: Any) -> None:
    """Fetch the logs of a service or task."""
    from shoal.cli.logs import FrameParser, LogOptions, LogPrefixer

    client = cli.get_client()
    try:
        target = client.get(f"/services/{ref}")
        kind, spec = "services", (target.get("Spec") or {}).get("TaskTemplate") or {}
        replicas = ((target.get("Spec") or {}).get("Mode") or {}).get("Replicated") or {}
        padding = len(str(replicas.get("Replicas") or 1))
    except APIError as exc:
        if exc.status != 404:
            raise
        try:
            target = client.get(f"/tasks/{ref}")
        except APIError as inner:
            if inner.status == 404:
                raise ShoalError(f"no such task or service: {ref}") from None
            raise
        kind, spec = "tasks", target.get("Spec") or {}
        padding = len(str(target.get("Slot") or 0))
    tty = bool((spec.get("ContainerSpec") or {}).get("TTY"))
    if tty and not opts["raw"]:
        raise ShoalError("tty service logs only supported with --raw")
    params: dict[str, Any] = {"details": "1" if opts["details"] or not opts["raw"] else None}
    params["follow"] = "1" if opts["follow"] else None
    params["since"] = _since(opts["since"], cli) if opts["since"] else None
    params.update(stderr="1", stdout="1", tail=opts["tail"])
    params["timestamps"] = "1" if opts["timestamps"] else None
    prefixer = LogPrefixer(
        client,
        LogOptions(
            opts["timestamps"], opts["details"], opts["no_task_ids"], opts["no_trunc"],
            opts["no_resolve"],
        ),
        padding,
    )  # fmt: skip
    with client.stream("GET", f"/{kind}/{ref}/logs", params=params) as response:
        if tty:
            for chunk in response.iter_bytes():
                echo(chunk.decode(errors="replace"))
            return
        parser = FrameParser()
        for chunk in response.iter_bytes():
            for stream, payload in parser.feed(chunk):
                text = payload.decode(errors="replace")
                if not opts["raw"]:
                    text = prefixer.format(text)
                echo(text, err=stream == 2)
