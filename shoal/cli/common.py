"""Helpers shared by the command modules: errors as docker prints them, filters, inspect.

Errors: a daemon's error is `Error response from daemon: <message>`, any other ShoalError
`Error: <message>`, a refused flag value docker's usage text; commands that work on several
objects collect their failures into one `ErrorList` so the others still happen (exit 1).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import click

from shoal.cli.context import ApiClient
from shoal.cli.format import indent_json
from shoal.cli.opts import FlagError, parse_filters
from shoal.errors import APIError, ShoalError

__all__ = [
    "ErrorList",
    "Resolver",
    "compact",
    "echo",
    "error_text",
    "filters_param",
    "inspect_objects",
    "node_reference",
    "parsed",
    "pretty_each",
]


class ErrorList(ShoalError):
    """Several failures of one command, each already worded for the terminal."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def error_text(exc: BaseException) -> str:
    """How docker words an error on stderr."""
    if isinstance(exc, APIError):
        return f"Error response from daemon: {exc.message}"
    if isinstance(exc, ShoalError):  # as docker 20.10 and 28 print it: no "Error: " added
        return exc.message
    return str(exc)


def echo(text: str, err: bool = False) -> None:
    """Write text as is (no newline added, ANSI sequences kept)."""
    click.echo(text, nl=False, err=err, color=True)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def parsed(flag: str, values: Iterable[str], parser: Callable[[str], Any]) -> list[Any]:
    """Each value through `parser`; a ValueError becomes docker's flag error."""
    out = []
    for value in values:
        try:
            out.append(parser(value))
        except ValueError as exc:
            raise FlagError(flag, value, str(exc)) from None
    return out


def filters_param(values: Iterable[str], flag: str = "-f, --filter") -> str | None:
    """The `filters` query parameter for `-f k=v` flags (None when there are none)."""
    items = list(values)
    try:
        filters = parse_filters(items)
    except ValueError as exc:
        bad = next((v for v in items if v and "=" not in v), "")
        raise FlagError(flag, bad, str(exc)) from None
    return compact(filters) if filters else None


def node_reference(client: ApiClient, ref: str) -> str:
    """docker's node.Reference: `self` is this node's ID from /info, other refs as given."""
    if ref != "self":
        return ref
    info = client.get("/info") or {}
    node_id = str((info.get("Swarm") or {}).get("NodeID") or "")
    if not node_id:
        client.get("/nodes")  # a swarm endpoint gives the precise "not a manager" error
        raise ShoalError("node ID not found in /info")
    return node_id


def inspect_objects(
    refs: Iterable[str],
    fetch: Callable[[str], Any],
    fmt: str,
) -> None:
    """docker's inspect: an indented JSON array (compact for `json`, or one template line per
    object), then the errors."""
    objects: list[Any] = []
    errors: list[str] = []
    for ref in refs:
        try:
            objects.append(fetch(ref))
        except ShoalError as exc:
            errors.append(error_text(exc))
    if fmt == "json":  # docker's compact JSON inspector
        echo(json.dumps(objects, ensure_ascii=False, separators=(",", ":")) + "\n")
    elif fmt:
        from shoal.cli.templates import parse  # only here: `ls` commands do without it

        tmpl = parse(fmt.replace("\\t", "\t").replace("\\n", "\n"))
        lines = []
        for obj in objects:
            try:
                lines.append(tmpl.execute(obj) + "\n")
            except ShoalError as exc:
                errors.append(error_text(exc))
        echo("".join(lines) or "\n")
    else:
        echo(indent_json(objects) if objects else "[]\n")
    if errors:
        raise ErrorList(errors)


def pretty_each(
    refs: Iterable[str],
    fetch: Callable[[str], Any],
    show: Callable[[Any], str],
    frame: str = "{}\n",
) -> None:
    """`inspect --pretty`: each object's text in `frame` (docker's template around it:
    `"{}\n"` for nodes, `"\n{}\n\n"` for services), then the errors."""
    errors = []
    texts = []
    for ref in refs:
        try:
            texts.append(frame.format(show(fetch(ref))))
        except ShoalError as exc:
            errors.append(error_text(exc))
    echo("".join(texts))
    if errors:
        raise ErrorList(errors)


class Resolver:
    """Names for node and service IDs, looked up once (docker's best-effort IDResolver)."""

    def __init__(self, client: ApiClient, disabled: bool = False) -> None:
        self.client = client
        self.disabled = disabled
        self._cache: dict[tuple[str, str], str] = {}

    def node(self, ident: str) -> str:
        return self._resolve("node", ident)

    def service(self, ident: str) -> str:
        return self._resolve("service", ident)

    def _resolve(self, kind: str, ident: str) -> str:
        if self.disabled or not ident:
            return ident
        if (kind, ident) not in self._cache:
            try:
                obj = self.client.get(f"/{kind}s/{ident}") or {}
            except APIError:
                obj = {}
            spec = obj.get("Spec") or {}
            name = spec.get("Name")
            if kind == "node":
                name = name or (obj.get("Description") or {}).get("Hostname")
            self._cache[(kind, ident)] = str(name or ident)
        return self._cache[(kind, ident)]
