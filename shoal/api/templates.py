"""Swarm's service templates (`--hostname "{{.Service.Name}}-{{.Task.Slot}}"`). Pure.

The fields of swarmkit's template context: `.Service.ID|Name`, `.Node.ID|Hostname`,
`.Task.ID|Name|Slot` (`.Service.Labels` is refused: a task does not carry its service's
labels here). The manager expands a spec with
placeholder values at create/update time (swarmkit's "best effort" check, so a bad template
is refused then, in Go's text/template words); the node that runs the task expands it for
real. No I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PLACEHOLDER", "TaskIdentity", "TemplateError", "check_template", "expand"]


class TemplateError(ValueError):
    """A template that does not parse or names a field the context does not have."""


@dataclass(frozen=True)
class TaskIdentity:
    task_id: str
    task_name: str  # "<service>.<slot>.<task id>" (or "<service>.<node id>.<task id>")
    slot: int
    service_id: str
    service_name: str
    node_id: str
    node_hostname: str

    def fields(self) -> dict[str, str]:
        return {
            ".Task.ID": self.task_id,
            ".Task.Name": self.task_name,
            ".Task.Slot": str(self.slot),
            ".Service.ID": self.service_id,
            ".Service.Name": self.service_name,
            ".Node.ID": self.node_id,
            ".Node.Hostname": self.node_hostname,
        }


# what swarmkit's controlapi expands a spec with to check it
PLACEHOLDER = TaskIdentity(
    "taskid", "taskname", 1, "serviceid", "servicename", "nodeid", "nodeHostname"
)
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_KINDS = {".Task": "TaskContext", ".Service": "ServiceContext", ".Node": "NodeContext"}


def _unknown(key: str, column: int) -> TemplateError:
    head, _, name = key.rpartition(".")
    kind = _KINDS.get(head, "Context")
    return TemplateError(
        f'template: expansion:1:{column}: executing "expansion" at <{key}>: '
        f"can't evaluate field {name} in type template.{kind}"
    )


def _value(expr: str, column: int, ident: TaskIdentity) -> str:
    key = expr.strip()
    fields = ident.fields()
    if key in fields:
        return fields[key]
    if ".Service.Labels" in key:
        raise TemplateError("template: expansion:1: .Service.Labels is not supported by shoal")
    if not key:
        raise TemplateError("template: expansion:1: missing value for command")
    if re.fullmatch(r"(\.[A-Za-z_]\w*)+", key):
        raise _unknown(key, column)
    raise TemplateError(f'template: expansion:1: function "{key.split()[0]}" not defined')


def expand(text: str, ident: TaskIdentity) -> str:
    """`text` with every `{{...}}` action replaced; TemplateError in Go's words."""
    if "{{" not in text:
        return text
    out: list[str] = []
    pos = 0
    for match in _ACTION.finditer(text):
        out.append(text[pos : match.start()])
        expr = match.group(1)  # Go's column: the byte offset of the field in the text
        column = match.start(1) + len(expr) - len(expr.lstrip())
        out.append(_value(expr, column, ident))
        pos = match.end()
    rest = text[pos:]
    if "{{" in rest:
        raise TemplateError("template: expansion:1: unclosed action")
    out.append(rest)
    return "".join(out)


def check_template(text: str) -> None:
    """Refuse a template that would not expand on any node (TemplateError)."""
    expand(text, PLACEHOLDER)
