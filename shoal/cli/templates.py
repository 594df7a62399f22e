"""A small Go text/template renderer for `--format`: pure.

Supported: literal text, `{{.Field}}`, `{{.A.B}}`, `{{.}}`, `$` and `$var` (`{{$x := ...}}`,
`{{range $k, $v := .Labels}}`), pipes (`{{.Name | upper}}`), parentheses, string/number/bool
literals, trim markers `{{-` / `-}}`, `if`/`else if`/`else`/`end`, `range` (with `else`),
`with`, and docker's functions (json, split, join, title, lower, upper, pad, truncate) plus
Go's index, len, print, println, printf, eq, ne, lt, le, gt, ge, and, or, not.

Data are JSON-like values: dicts, lists, str, int, float, bool, None. A `Row` (a dict) is a
fixed set of fields like docker's formatter contexts: an unknown field is an error there; a
missing key of any other dict reads as no value. Values print like Go's `%v`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shoal.cli.template_funcs import FUNCS, HEADER_FUNCS, Row, TemplateError, to_text, truthy

__all__ = ["HEADER_FUNCS", "Row", "Template", "TemplateError", "parse", "to_text"]


# --- lexing and parsing --------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<decl>:=)
    | (?P<var>\$\w*(?:\.\w+)*)
    | (?P<field>(?:\.\w+)+|\.)
    | (?P<punct>[|(),=])
    | (?P<ident>\w+)
    )""",
    re.VERBOSE,
)


@dataclass
class _Node:
    kind: str  # text | action | if | range | with
    text: str = ""
    pipe: list[Any] = field(default_factory=list)
    decl: list[str] = field(default_factory=list)
    body: list[_Node] = field(default_factory=list)
    other: list[_Node] = field(default_factory=list)


def _tokens(src: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(src):
        if not src[pos:].strip():
            break
        match = _TOKEN.match(src, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f'template parsing error: unexpected "{src[pos:].strip()}"')
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _split_actions(src: str) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = src.find("{{", pos)
        if start < 0:
            parts.append(("text", src[pos:]))
            return parts
        text = src[pos:start]
        inner_start = start + 2
        if src[inner_start : inner_start + 2] in ("- ", "-\t", "-\n"):
            text = text.rstrip()
            inner_start += 1
        end = _find_close(src, inner_start)
        inner = src[inner_start:end]
        pos = end + 2
        if inner.endswith((" -", "\t-", "\n-")):
            inner = inner[:-1]
            rest = src[pos:]
            pos += len(rest) - len(rest.lstrip())
        parts.append(("text", text))
        parts.append(("action", inner.strip()))


def _find_close(src: str, pos: int) -> int:
    quote = ""
    while pos < len(src) - 1:
        c = src[pos]
        if quote:
            if c == "\\" and quote == '"':
                pos += 1
            elif c == quote:
                quote = ""
        elif c in '"`':
            quote = c
        elif src.startswith("}}", pos):
            return pos
        pos += 1
    raise TemplateError("template parsing error: unclosed action")


def _parse_pipe(tokens: list[tuple[str, str]]) -> tuple[list[str], list[Any]]:
    decl: list[str] = []
    if any(kind == "decl" for kind, _ in tokens):
        while tokens and tokens[0][0] != "decl":
            kind, value = tokens.pop(0)
            if kind == "var":
                decl.append(value)
            elif value != ",":
                raise TemplateError(f"template parsing error: bad declaration near {value}")
        tokens.pop(0)
    pipe, rest = _parse_commands(tokens)
    if rest:
        raise TemplateError(f"template parsing error: unexpected {rest[0][1]!r}")
    if not pipe:
        raise TemplateError("template parsing error: missing value for command")
    return decl, pipe


def _parse_commands(tokens: list[tuple[str, str]]) -> tuple[list[Any], list[tuple[str, str]]]:
    commands: list[Any] = []
    current: list[Any] = []
    while tokens:
        kind, value = tokens[0]
        if kind == "punct" and value == ")":
            break
        tokens = tokens[1:]
        if kind == "punct" and value == "|":
            commands.append(current)
            current = []
        elif kind == "punct" and value == "(":
            inner, tokens = _parse_commands(tokens)
            if not tokens or tokens[0][1] != ")":
                raise TemplateError("template parsing error: unclosed left paren")
            tokens = tokens[1:]
            current.append(("pipe", inner))
        else:
            current.append((kind, value))
    if current:
        commands.append(current)
    return commands, tokens


def _parse(
    parts: list[tuple[str, str]], pos: int, stop: tuple[str, ...]
) -> tuple[list[_Node], int, str]:
    nodes: list[_Node] = []
    while pos < len(parts):
        kind, text = parts[pos]
        pos += 1
        if kind == "text":
            if text:
                nodes.append(_Node("text", text=text))
            continue
        if text.startswith("/*"):
            continue
        word = text.split(None, 1)[0] if text else ""
        rest = text[len(word) :].strip()
        if word in ("end", "else"):
            if word not in stop:
                raise TemplateError(f"template parsing error: unexpected {{{{{word}}}}}")
            return nodes, pos, text
        if word in ("if", "range", "with"):
            block, pos = _parse_block(word, rest, parts, pos)
            nodes.append(block)
            continue
        node = _Node("action")
        node.decl, node.pipe = _parse_pipe(_tokens(text))
        nodes.append(node)
    if stop:
        raise TemplateError("template parsing error: unexpected EOF")
    return nodes, pos, ""


def _parse_block(word: str, rest: str, parts: list[tuple[str, str]], pos: int) -> tuple[_Node, int]:
    node = _Node(word)
    node.decl, node.pipe = _parse_pipe(_tokens(rest))
    node.body, pos, ended = _parse(parts, pos, ("end", "else"))
    if ended.startswith("else"):
        tail = ended[4:].strip()
        chained = tail.split(None, 1)[0] if tail else ""
        if chained in ("if", "with"):
            # `else if X` nests an `if` in the else branch that shares our `end`
            inner, pos = _parse_block(chained, tail[len(chained) :].strip(), parts, pos)
            node.other = [inner]
        else:
            node.other, pos, _ = _parse(parts, pos, ("end",))
    return node, pos


# --- execution ---------------------------------------------------------------------------


@dataclass
class Template:
    nodes: list[_Node]

    def execute(self, data: Any, funcs: dict[str, Callable[..., Any]] | None = None) -> str:
        out: list[str] = []
        _Exec(funcs or FUNCS, [{"$": data}]).run(self.nodes, data, out)
        return "".join(out)


class _Exec:
    def __init__(self, funcs: dict[str, Callable[..., Any]], scopes: list[dict[str, Any]]) -> None:
        self.funcs = funcs
        self.scopes = scopes

    def run(self, nodes: list[_Node], dot: Any, out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                value = self.pipe(node.pipe, dot)
                if node.decl:
                    self.scopes[-1][node.decl[0]] = value
                else:
                    out.append(to_text(value))
            elif node.kind in ("if", "with"):
                value = self.pipe(node.pipe, dot)
                if node.decl:
                    self.scopes[-1][node.decl[0]] = value
                if truthy(value):
                    self.scoped(node.body, value if node.kind == "with" else dot, out, {})
                else:
                    self.scoped(node.other, dot, out, {})
            else:
                self.range(node, dot, out)

    def scoped(self, nodes: list[_Node], dot: Any, out: list[str], names: dict[str, Any]) -> None:
        self.scopes.append(names)
        try:
            self.run(nodes, dot, out)
        finally:
            self.scopes.pop()

    def range(self, node: _Node, dot: Any, out: list[str]) -> None:
        value = self.pipe(node.pipe, dot)
        if isinstance(value, dict):
            items: list[tuple[Any, Any]] = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif value is None:
            items = []
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise TemplateError(f"range can't iterate over {to_text(value)}")
        if not items:
            self.scoped(node.other, dot, out, {})
            return
        for key, elem in items:
            names: dict[str, Any] = {}
            if len(node.decl) == 1:
                names[node.decl[0]] = elem
            elif len(node.decl) == 2:
                names[node.decl[0]], names[node.decl[1]] = key, elem
            self.scoped(node.body, elem, out, names)

    def pipe(self, commands: list[Any], dot: Any) -> Any:
        value: Any = _NOTHING
        for command in commands:
            value = self.command(command, dot, value)
        return value

    def command(self, command: list[Any], dot: Any, piped: Any) -> Any:
        head_kind, head = command[0]
        if head_kind == "ident" and head not in ("true", "false", "nil"):
            func = self.funcs.get(head)
            if func is None:
                raise TemplateError(f'template parsing error: function "{head}" not defined')
            args = [self.operand(op, dot) for op in command[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            try:
                return func(*args)
            except TemplateError:
                raise
            except (TypeError, AttributeError, ValueError) as exc:
                raise TemplateError(f"error calling {head}: {exc}") from None
        if len(command) > 1 or piped is not _NOTHING:
            raise TemplateError(f"can't give argument to non-function {head}")
        return self.operand(command[0], dot)

    def operand(self, op: tuple[str, Any], dot: Any) -> Any:
        kind, value = op
        if kind == "pipe":
            return self.pipe(value, dot)
        if kind == "str":
            return json.loads(value) if value.startswith('"') else value[1:-1]
        if kind == "num":
            return float(value) if "." in value else int(value)
        if kind == "ident":
            if value in ("true", "false"):
                return value == "true"
            if value == "nil":
                return None
            return self.command([op], dot, _NOTHING)
        if kind == "field":
            return _fields(dot, value.split(".")[1:] if value != "." else [])
        if kind == "var":
            name, *path = value.split(".")
            for scope in reversed(self.scopes):
                if name in scope:
                    return _fields(scope[name], path)
            raise TemplateError(f'template parsing error: undefined variable "{name}"')
        raise TemplateError(f"template parsing error: unexpected {value}")


_NOTHING = object()


def _fields(value: Any, path: list[str]) -> Any:
    for name in path:
        if isinstance(value, Row):
            if name not in value:
                raise TemplateError(
                    f'template: :1: executing "" at <.{name}>: can\'t evaluate field {name}'
                )
            value = value[name]
        elif isinstance(value, dict):
            value = value.get(name)
        elif value is None:
            raise TemplateError(f"template: nil pointer evaluating .{name}")
        else:
            raise TemplateError(f"template: can't evaluate field {name} in {to_text(value)}")
    return value


def parse(src: str) -> Template:
    nodes, _, _ = _parse(_split_actions(src), 0, ())
    return Template(nodes)
