"""`shoal secret|config create|ls|inspect|rm`: swarm secrets and configs, with the docker
CLI's calls, flags, columns and output (docker 28.2; compared on a lab, session 12).

`create NAME FILE|-` reads the data from a file or stdin and POSTs it base64-encoded; `ls` is
sorted by name; `inspect --pretty` prints docker's templates (a config's data in clear, a
secret's never: the API does not return it).
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from shoal.cli.common import (
    ErrorList,
    echo,
    error_text,
    filters_param,
    inspect_objects,
    parsed,
    pretty_each,
)
from shoal.cli.context import CliContext, pass_cli
from shoal.cli.durations import human_duration, parse_time
from shoal.cli.format import Row, render
from shoal.cli.opts import parse_label, to_map
from shoal.cli.pretty import go_time_pretty
from shoal.errors import ShoalError

__all__ = ["config", "secret"]

_HEADERS = {
    "ID": "ID", "Name": "NAME", "Driver": "DRIVER", "CreatedAt": "CREATED",
    "UpdatedAt": "UPDATED", "Labels": "LABELS",
}  # fmt: skip
_FORMATS = {
    "secret": "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
    "config": "table {{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
}
_LABELS = """
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}"""
_PRETTY = {
    "secret": "ID:              {{.ID}}\nName:              {{.Name}}" + _LABELS + """
Driver:            {{.Driver}}
Created at:        {{.CreatedAt}}
Updated at:        {{.UpdatedAt}}""",
    "config": "ID:\t\t\t{{.ID}}\nName:\t\t\t{{.Name}}" + _LABELS + """
Created at:            \t{{.CreatedAt}}
Updated at:            \t{{.UpdatedAt}}
Data:
{{.Data}}""",
}


def _ago(stamp: Any, now: Any) -> str:
    parsed_at = parse_time(str(stamp or ""))
    return f"{human_duration((now - parsed_at).total_seconds())} ago" if parsed_at else ""


def _driver(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("Spec") or {}).get("Driver") or {}).get("Name") or "")


def _rows(objects: list[Mapping[str, Any]], now: Any) -> list[Row]:
    rows = []
    for obj in sorted(objects, key=lambda o: str((o.get("Spec") or {}).get("Name") or "")):
        spec = obj.get("Spec") or {}
        labels = spec.get("Labels") or {}
        rows.append(Row({
            "ID": str(obj.get("ID") or ""),
            "Name": str(spec.get("Name") or ""),
            "Driver": _driver(obj),
            "CreatedAt": _ago(obj.get("CreatedAt"), now),
            "UpdatedAt": _ago(obj.get("UpdatedAt"), now),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        }))  # fmt: skip
    return rows


def _pretty(kind: str, obj: Mapping[str, Any]) -> str:
    from shoal.cli.templates import parse

    spec = obj.get("Spec") or {}
    data = ""
    if kind == "config":
        data = base64.b64decode(str(spec.get("Data") or "")).decode("utf-8", "replace")
    return parse(_PRETTY[kind]).execute({
        "ID": str(obj.get("ID") or ""),
        "Name": str(spec.get("Name") or ""),
        "Labels": spec.get("Labels") or {},
        "Driver": _driver(obj),
        "CreatedAt": go_time_pretty(str(obj.get("CreatedAt") or "")),
        "UpdatedAt": go_time_pretty(str(obj.get("UpdatedAt") or "")),
        "Data": data,
    })  # fmt: skip


def _read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:  # docker's words, as they are (no "Error: ")
        reason = (exc.strerror or str(exc)).lower()
        raise ErrorList([f"error reading from {source}: open {source}: {reason}"]) from None


def _group(kind: str) -> click.Group:
    plural = f"{kind}s"

    @click.group(name=kind, help=f"Manage Swarm {plural}.")
    def group() -> None:
        pass

    @group.command(help=f"Create a {kind} from a file or STDIN as content.")
    @click.argument("name", metavar=kind.upper())
    @click.argument("source", metavar="file|-")
    @click.option("-l", "--label", "labels", multiple=True, help=f"{kind.capitalize()} labels")
    @pass_cli
    def create(cli: CliContext, name: str, source: str, labels: tuple[str, ...]) -> None:
        body = {
            "Name": name,
            "Labels": to_map(parsed("-l, --label", labels, parse_label)),
            "Data": base64.b64encode(_read(source)).decode(),
        }
        made = cli.get_client().post(f"/{plural}/create", body) or {}
        echo(f"{made.get('ID', '')}\n")

    @group.command("ls", help=f"List {plural}.")
    @click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
    @click.option("-f", "--filter", "filters", multiple=True,
                  help="Filter output based on conditions provided")  # fmt: skip
    @click.option("--format", "fmt", default="", help="Format output using a custom template")
    @pass_cli
    def ls(cli: CliContext, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
        found = cli.get_client().get(f"/{plural}", params={"filters": filters_param(filters)})
        if quiet and fmt in ("", "table"):
            fmt = "{{.ID}}"
        echo(render(_rows(found or [], cli.now()), fmt, _FORMATS[kind], _HEADERS))

    @group.command(help=f"Display detailed information on one or more {plural}.")
    @click.argument("refs", nargs=-1, required=True, metavar=f"{kind.upper()} [{kind.upper()}...]")
    @click.option("-f", "--format", "fmt", default="", help="Format output using a custom template")
    @click.option("--pretty", is_flag=True, help="Print the information in a human friendly format")
    @pass_cli
    def inspect(cli: CliContext, refs: tuple[str, ...], fmt: str, pretty: bool) -> None:
        client = cli.get_client()

        def fetch(ref: str) -> Any:
            return client.get(f"/{plural}/{ref}")

        if pretty:
            pretty_each(refs, fetch, lambda obj: _pretty(kind, obj))
        else:
            inspect_objects(refs, fetch, fmt)

    @group.command("rm", help=f"Remove one or more {plural}.")
    @click.argument("refs", nargs=-1, required=True, metavar=f"{kind.upper()} [{kind.upper()}...]")
    @pass_cli
    def rm(cli: CliContext, refs: tuple[str, ...]) -> None:
        client = cli.get_client()
        errors = []
        for ref in refs:
            try:
                client.delete(f"/{plural}/{ref}")
                echo(f"{ref}\n")
            except ShoalError as exc:
                errors.append(error_text(exc))
        if errors:
            raise ErrorList(errors)

    return group


secret = _group("secret")
config = _group("config")
