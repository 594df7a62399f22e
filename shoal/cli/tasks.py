"""Task tables of `service ps` and `node ps`, as docker's task formatter prints them.

Tasks are named `<service>.<slot>` (`<service>.<node ID>` for global services), sorted by
name (numbers compared as numbers) and newest first within a slot; in table formats the
older tasks of a slot are indented ` \\_ web.1`. `task_rows` is pure (names and `now` are
given); `print_tasks` resolves service and node names through the daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from shoal.cli.common import Resolver, echo
from shoal.cli.durations import human_duration, parse_time
from shoal.cli.format import Row, ellipsis, image_display, natural_key, pretty, render, truncate_id

__all__ = ["TASK_FORMAT", "TASK_HEADERS", "print_tasks", "task_rows"]

TASK_FORMAT = (
    "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}"
    "\t{{.Error}}\t{{.Ports}}"
)
TASK_HEADERS = {
    "ID": "ID",
    "Name": "NAME",
    "Image": "IMAGE",
    "Node": "NODE",
    "DesiredState": "DESIRED STATE",
    "CurrentState": "CURRENT STATE",
    "Error": "ERROR",
    "Ports": "PORTS",
}
_RAW = (
    "id: {{.ID}}\\nname: {{.Name}}\\nimage: {{.Image}}\\nnode: {{.Node}}\\n"
    "desired_state: {{.DesiredState}}\\ncurrent_state: {{.CurrentState}}\\n"
    "error: {{.Error}}\\nports: {{.Ports}}\\n"
)


def _epoch(stamp: str | None) -> float:
    parsed = parse_time(stamp or "")
    return parsed.timestamp() if parsed else 0.0


def _port_text(port: Mapping[str, Any]) -> str:
    published, target = port.get("PublishedPort") or 0, port.get("TargetPort") or 0
    return f"*:{published}->{target}/{port.get('Protocol') or ''}"


def current_state(status: Mapping[str, Any], now: datetime) -> str:
    """`Running 5 seconds ago`."""
    state = pretty(str(status.get("State") or ""))
    stamp = parse_time(str(status.get("Timestamp") or ""))
    if stamp is None:
        return state
    return f"{state} {human_duration((now - stamp).total_seconds()).lower()} ago"


def task_rows(
    tasks: list[Mapping[str, Any]],
    service_name: Callable[[str], str],
    node_name: Callable[[str], str],
    now: datetime,
    trunc: bool,
    table: bool,
) -> list[Row]:
    named = []
    for task in tasks:
        service = service_name(str(task.get("ServiceID") or ""))
        slot = task.get("Slot") or 0
        name = f"{service}.{slot}" if slot else f"{service}.{task.get('NodeID') or ''}"
        named.append((name, task))
    named.sort(key=lambda item: (natural_key(item[0]), -_epoch(item[1].get("CreatedAt"))))
    rows: list[Row] = []
    previous = None
    for name, task in named:
        status = task.get("Status") or {}
        image = str(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image") or "")
        error = str(status.get("Err") or "")
        if trunc:
            error = ellipsis(error, 30)
        ports = ((status.get("PortStatus") or {}).get("Ports")) or []
        row = {
            "CurrentState": current_state(status, now),
            "DesiredState": pretty(str(task.get("DesiredState") or "")),
            "Error": f'"{error}"' if error else "",
            "ID": truncate_id(str(task.get("ID"))) if trunc else str(task.get("ID")),
            "Image": image_display(image) if trunc else image,
            "Name": (" \\_ " + name) if table and name == previous else name,
            "Node": node_name(str(task.get("NodeID") or "")),
            "Ports": ",".join(_port_text(p) for p in ports),
        }
        previous = name
        rows.append(Row(row))
    return rows


def print_tasks(
    resolver: Resolver,
    tasks: list[Mapping[str, Any]],
    now: datetime,
    fmt: str,
    quiet: bool,
    no_trunc: bool,
) -> None:
    fmt = fmt or "table"
    if fmt == "table" and quiet:
        fmt = "{{.ID}}"
    elif fmt == "raw":
        fmt = "id: {{.ID}}" if quiet else _RAW
    trunc = not (no_trunc or quiet)
    rows = task_rows(tasks, resolver.service, resolver.node, now, trunc, fmt.startswith("table"))
    echo(render(rows, fmt, TASK_FORMAT, TASK_HEADERS))
