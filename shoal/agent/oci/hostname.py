"""Swarm's ContainerSpec templates (`{{.Task.Slot}}`, `{{.Service.Name}}`, ...). Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TaskIdentity", "TemplateError", "expand"]


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class TaskIdentity:
    task_id: str
    task_name: str  # "<service>.<slot>.<task id>"
    slot: int
    service_id: str
    service_name: str
    node_id: str
    node_hostname: str
    service_labels: tuple[tuple[str, str], ...] = ()

    def values(self) -> dict[str, str]:
        return {
            ".Task.ID": self.task_id,
            ".Task.Name": self.task_name,
            ".Task.Slot": str(self.slot),
            ".Service.ID": self.service_id,
            ".Service.Name": self.service_name,
            ".Node.ID": self.node_id,
            ".Node.Hostname": self.node_hostname,
        }


_FIELD = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")


def expand(text: str, ident: TaskIdentity) -> str:
    values = ident.values()
    labels = dict(ident.service_labels)

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        label = re.fullmatch(r'index \.Service\.Labels "([^"]*)"', key)
        if label:
            return labels.get(label.group(1), "")
        raise TemplateError(f'template: expansion:1: unsupported field "{key}"')

    return _FIELD.sub(one, text)
