"""Values and functions of shoal's Go-template renderer (see templates.py): pure.

`to_text` prints a JSON-like value like Go's `%v`; `FUNCS` are docker's template functions
(json, split, join, title, lower, upper, pad, truncate) and Go's builtins the CLI needs;
`HEADER_FUNCS` is docker's variant used to render table headers, where the formatting
functions return the column name untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from shoal.errors import InvalidArgument

__all__ = ["FUNCS", "HEADER_FUNCS", "Row", "TemplateError", "to_text", "truthy"]


class TemplateError(InvalidArgument):
    pass


class Row(dict[str, Any]):
    """A formatter row: its keys are the only fields a template may name."""


# --- values ------------------------------------------------------------------------------


def to_text(value: Any, top: bool = True) -> str:
    """Go's fmt `%v` of a JSON-like value."""
    if value is None:
        return "<no value>" if top else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e21 else str(int(value))
    if isinstance(value, dict):
        items = " ".join(f"{k}:{to_text(value[k], False)}" for k in sorted(value))
        return f"map[{items}]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(to_text(v, False) for v in value) + "]"
    return str(value)


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, list | dict) and not value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _join(value: Any, sep: str) -> str:
    return "" if value is None else sep.join(to_text(v, False) for v in value)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list | str) and isinstance(key, int):
            if not 0 <= key < len(value):
                raise TemplateError(f"error calling index: index out of range: {key}")
            value = value[key]
        else:
            raise TemplateError(f"error calling index: cannot index {to_text(value)}")
    return value


def _printf(fmt: str, *args: Any) -> str:
    values = iter(args)

    def sub(match: re.Match[str]) -> str:
        verb = match.group(1)
        if verb == "%":
            return "%"
        value = next(values, None)
        return _json(value) if verb == "q" else to_text(value, False)

    return re.sub(r"%[-+ #0-9.]*([a-zA-Z%])", sub, fmt)


def _print(*args: Any) -> str:
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += to_text(arg, False)
    return out


def _eq(a: Any, *others: Any) -> bool:
    return any(a == b for b in others)


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        try:
            return op(a, b)
        except TypeError:
            raise TemplateError("incompatible types for comparison") from None

    return compare


def _and(*args: Any) -> Any:
    for arg in args:
        if not truthy(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if truthy(arg):
            return arg
    return args[-1]


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "split": lambda s, sep: s.split(sep),
    "join": _join,
    "title": lambda s: re.sub(r"\b(\w)", lambda m: m.group(1).upper(), s),
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "pad": lambda s, pre, post: s and " " * pre + s + " " * post,
    "truncate": lambda s, n: s[:n],
    "index": _index,
    "len": lambda v: len(v) if v is not None else 0,
    "print": _print,
    "println": lambda *a: " ".join(to_text(v, False) for v in a) + "\n",
    "printf": _printf,
    "eq": _eq,
    "ne": lambda a, b: a != b,
    "lt": _cmp(lambda a, b: a < b),
    "le": _cmp(lambda a, b: a <= b),
    "gt": _cmp(lambda a, b: a > b),
    "ge": _cmp(lambda a, b: a >= b),
    "and": _and,
    "or": _or,
    "not": lambda v: not truthy(v),
}

# docker renders table headers with these, so `{{json .Labels}}` heads a column "LABELS"
HEADER_FUNCS: dict[str, Callable[..., Any]] = {
    **FUNCS,
    **{name: (lambda v, *_: v) for name in ("json", "split", "join", "title", "lower", "upper")},
    "truncate": lambda v, *_: v,
}
