"""`shoal events`: the swarm's event stream, as `docker events` prints it.

`--since`/`--until` take what docker's take: a Unix timestamp, an RFC 3339 time or a Go
duration back from now (`10m`); `--filter key=value` (repeatable); `--format` a Go template
(`{{json .}}` for one JSON object per line). Without `--until` it streams until interrupted.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click

from shoal.api.timefmt import to_epoch
from shoal.cli.common import echo
from shoal.cli.context import CliContext, pass_cli
from shoal.cli.durations import parse_duration
from shoal.cli.templates import TemplateError, parse

__all__ = ["event_line", "events", "timestamp_param"]


def timestamp_param(value: str, now: float) -> str:
    """docker's GetTimestamp: what the CLI sends for --since/--until."""
    try:
        return f"{now - parse_duration(value) / 1e9:.9f}"
    except ValueError:
        pass
    head, _, frac = value.partition(".")
    if head.isdigit() and (not frac or frac.isdigit()):
        return value
    try:
        return f"{to_epoch(value):.9f}"
    except ValueError:
        raise click.BadParameter(f"invalid time {value!r}") from None


def event_line(msg: dict[str, Any]) -> str:
    """docker's default rendering: time, type, action, actor ID and (attributes)."""
    ns = int(msg.get("timeNano", 0))
    when = datetime.fromtimestamp(ns // 1_000_000_000).astimezone()
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}" + when.strftime("%z")
    stamp = f"{stamp[:-2]}:{stamp[-2:]}"
    attrs = msg["Actor"].get("Attributes") or {}
    shown = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
    return f"{stamp} {msg['Type']} {msg['Action']} {msg['Actor']['ID']}" + (
        f" ({shown})" if shown else "")


def _filters(values: tuple[str, ...]) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for value in values:
        key, eq, val = value.partition("=")
        if not eq:
            raise click.BadParameter(f"bad format of filter (expected name=value): {value}",
                                     param_hint="--filter")
        out.setdefault(key.strip().lower(), {})[val] = True
    return out


@click.command("events")
@click.option("--since", default="", help="Show all events created since timestamp")
@click.option("--until", default="", help="Stream events until this timestamp")
@click.option("-f", "--filter", "filters", multiple=True,
              help="Filter output based on conditions provided")
@click.option("--format", "fmt", default="",
              help="Format output using a custom template ('json' too)")
@pass_cli
def events(cli: CliContext, since: str, until: str, filters: tuple[str, ...], fmt: str) -> None:
    """Get real time events from the server."""
    now = time.time()
    params: dict[str, Any] = {}
    if since:
        params["since"] = timestamp_param(since, now)
    if until:
        params["until"] = timestamp_param(until, now)
    if filters:
        params["filters"] = json.dumps(_filters(filters))
    try:
        template = parse("{{json .}}" if fmt == "json" else fmt) if fmt else None
    except TemplateError as exc:
        raise click.BadParameter(str(exc), param_hint="--format") from None
    with cli.get_client().stream("GET", "/events", params=params) as resp:
        for line in resp.iter_lines():
            if line.strip():
                msg = json.loads(line)
                echo((template.execute(msg) if template else event_line(msg)) + "\n")
