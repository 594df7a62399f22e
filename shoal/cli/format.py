"""Output formatting shared by the commands: pure.

`tabwrite` is Go's text/tabwriter as docker configures it (minwidth 10, padding 3, spaces),
so tables line up exactly like docker's. `render` applies a docker `--format` value to a
list of rows: `table` (default columns), `table TEMPLATE` (header from the column names),
`json` (one JSON object per row) or a bare Go template; a template of nothing but literal text
and `{{.Field}}` actions (the default tables) is filled in without the template engine, which
is imported only for the others (issue 13: parsing and running it, with its import, was ~20 M
instructions of a 230 M `service ls`). Also docker's small display helpers
(truncated IDs, capitalised states, ellipsis, image names without digest, ingress port
ranges) and the JSON indentation of `inspect`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from itertools import groupby
from typing import Any

from shoal.cli.template_funcs import HEADER_FUNCS, Row, to_text

__all__ = [
    "Row",
    "bytes_size",
    "ellipsis",
    "image_display",
    "image_with_tag",
    "indent_json",
    "natural_key",
    "pretty",
    "render",
    "service_ports",
    "tabwrite",
    "truncate_id",
]


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-terminated cells into columns like Go's tabwriter (flags 0, pad ' ')."""
    lines = [line.split("\t") for line in text.split("\n")]
    trailing_newline = bool(lines) and lines[-1] == [""]
    if trailing_newline:
        lines.pop()
    out: list[str] = []
    _format(lines, 0, len(lines), [], minwidth, padding, out)
    return "\n".join(out) + ("\n" if trailing_newline else "")


def _format(
    lines: list[list[str]],
    line0: int,
    line1: int,
    widths: list[int],
    minw: int,
    pad: int,
    out: list[str],
) -> None:
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        _emit(lines, line0, this, widths, out)
        line0 = this
        width = minw
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, len(lines[this][column]) + pad)
            this += 1
        _format(lines, line0, this, [*widths, width], minw, pad, out)
        line0 = this
    _emit(lines, line0, line1, widths, out)


def _emit(
    lines: list[list[str]], line0: int, line1: int, widths: list[int], out: list[str]
) -> None:
    for cells in lines[line0:line1]:
        text = ""
        for j, cell in enumerate(cells):
            text += cell.ljust(widths[j]) if j < len(widths) else cell
        out.append(text)


def _template_text(fmt: str) -> str:
    text = fmt[len("table") :] if fmt.startswith("table") else fmt
    return text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")


def render(
    rows: Iterable[Mapping[str, Any]], fmt: str, default: str, headers: Mapping[str, str]
) -> str:
    """Rows formatted by a docker `--format` value ("" or "table" means `default`)."""
    if fmt in ("", "table"):
        fmt = default
    if fmt == "json":
        fmt = "{{json .}}"
    text = _template_text(fmt)
    data = [Row(row) for row in rows]
    head = Row({name: headers.get(name, name.upper()) for name in headers})
    table = fmt.startswith("table")
    parts = _fields_only(text)
    filled = [*data, head] if table else data
    if parts is not None and all(_has_fields(row, parts) for row in filled):
        body = "".join(_fill(parts, row) + "\n" for row in data)
        return tabwrite(_fill(parts, head) + "\n" + body) if table else body
    from shoal.cli.templates import parse

    tmpl = parse(text)
    body = "".join(tmpl.execute(row) + "\n" for row in data)
    if not table:
        return body
    return tabwrite(tmpl.execute(head, HEADER_FUNCS) + "\n" + body)


def _fields_only(text: str) -> list[str] | None:
    """`text` as [literal, field, literal, field, ..., literal] when its only actions are
    `{{.Field}}` (`\\w+` names: what the template engine prints as `to_text(row[Field])`),
    else None. Without a regex: compiling one was 0.6 M instructions of a CLI run."""
    first, *actions = text.split("{{")
    parts = [first]
    for action in actions:
        name, closed, literal = action.partition("}}")
        if not closed or name[:1] != "." or not name[1:].replace("_", "a").isalnum():
            return None
        parts += [name[1:], literal]
    return parts


def _has_fields(row: Row, parts: list[str]) -> bool:
    return all(name in row for name in parts[1::2])  # else the engine words the error


def _fill(parts: list[str], row: Row) -> str:
    return "".join(part if i % 2 == 0 else to_text(row[part]) for i, part in enumerate(parts))


def indent_json(objects: list[Any]) -> str:
    """`inspect` output: a JSON array indented by 4 like Go's json.Indent."""
    return json.dumps(objects, indent=4, ensure_ascii=False, separators=(",", ": ")) + "\n"


def bytes_size(size: float) -> str:
    """go-units BytesSize: 1024-based with 4 significant digits (`15.51GiB`)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"


def truncate_id(ident: str) -> str:
    return ident.split(":", 1)[-1][:12]


def pretty(value: str | None) -> str:
    """docker's PrettyPrint: first letter upper-cased, the rest lower-cased."""
    if value is None:
        return "None"
    if len(value) <= 1:
        return value.lower()
    return value[0].upper() + value[1:].lower()


def ellipsis(text: str, width: int) -> str:
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[:1] if width == 1 else text[: width - 1] + "…"


def natural_key(text: str) -> list[Any]:
    """Sort key comparing digit runs as numbers (fvbommel/sortorder's NaturalLess)."""
    return [  # runs of decimal digits and of the rest (re.split(r"(\d+)") without a regex)
        (0, int(part), part) if part.isdigit() else (1, 0, part)
        for part in ("".join(run) for _, run in groupby(text, str.isdecimal))
    ]


# --- image references ----------------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = (
    rf"^(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)  # compiled when first used (re's cache), not at import


def _parse_reference(image: str) -> re.Match[str] | None:
    if re.fullmatch(r"[a-f0-9]{64}", image):
        return None  # an image ID is not a name (ParseNormalizedNamed refuses it)
    match = re.match(_REFERENCE, image)
    if match is None or len(match.group("name")) > 255:
        return None
    return match


def image_with_tag(image: str) -> str:
    """What the docker client sends: `busybox` -> `busybox:latest` (digests kept)."""
    match = _parse_reference(image)
    if match is None or match.group("tag") or match.group("digest"):
        return image
    return image + ":latest"


def image_display(image: str) -> str:
    """`name:tag@sha256:...` shown as `name:tag` (docker strips the digest of a tagged ref)."""
    if "@" not in image:
        return image  # no digest to strip: a tagged name is shown as it is (and no regex run)
    match = _parse_reference(image)
    if match is None or not match.group("tag"):
        return image
    return f"{match.group('name')}:{match.group('tag')}"


# --- ports -----------------------------------------------------------------------------------


def _range_text(pub: tuple[int, int], tgt: tuple[int, int], proto: str) -> str:
    p = f"{pub[0]}-{pub[1]}" if pub[1] > pub[0] else str(pub[0])
    t = f"{tgt[0]}-{tgt[1]}" if tgt[1] > tgt[0] else str(tgt[0])
    return f"*:{p}->{t}/{proto}"


def service_ports(ports: list[Mapping[str, Any]] | None) -> str:
    """`service ls` PORTS: ingress ports grouped into ranges (`*:8080-8081->80-81/tcp`)."""
    if not ports:
        return ""
    ordered = sorted(ports, key=lambda p: (p.get("Protocol") or "", p.get("PublishedPort") or 0))
    out: list[str] = []
    cur: list[Any] | None = None  # [pStart, pEnd, tStart, tEnd, proto]
    for port in ordered:
        if (port.get("PublishMode") or "ingress") != "ingress":
            continue
        proto = port.get("Protocol") or "tcp"
        pub, tgt = port.get("PublishedPort") or 0, port.get("TargetPort") or 0
        if cur is not None:
            # Go compares uint32 differences, so a smaller port wraps around: "not next"
            is_range = cur[3] != cur[2]
            pub_step, tgt_step = pub - cur[1], tgt - cur[3]
            new = (
                proto != cur[4]
                or not 0 <= pub_step <= 1
                or not 0 <= tgt_step <= 1
                or (is_range and tgt <= cur[3])
            )
            if not new:
                cur[1], cur[3] = pub, tgt
                continue
            if cur[0] > 0:
                out.append(_range_text((cur[0], cur[1]), (cur[2], cur[3]), cur[4]))
        cur = [pub, pub, tgt, tgt, proto]
    if cur is not None and cur[0] > 0:
        out.append(_range_text((cur[0], cur[1]), (cur[2], cur[3]), cur[4]))
    return ", ".join(out)
