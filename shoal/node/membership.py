"""This node's swarm membership on disk: `<data root>/swarm/node.json`.

Written atomically whenever it changes (join, init, a new list of managers). Its presence
is what makes a restarted daemon rejoin its swarm; `swarm leave` deletes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Membership", "load_membership", "save_membership"]


@dataclass(frozen=True)
class Membership:
    node_id: str
    subnet: str
    addr: str  # the address this node advertises
    role: str = "manager"  # what this node runs: "manager" (store + dispatcher) or "worker"
    managers: list[str] = field(default_factory=list)  # "ip:port" of the managers' 2377
    listen_addr: str = "0.0.0.0:2377"  # a manager's 2377 listener


def load_membership(path: Path) -> Membership | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return Membership(
        node_id=data["node_id"],
        subnet=data["subnet"],
        addr=data["addr"],
        role=data.get("role", "manager"),
        managers=list(data.get("managers", [])),
        listen_addr=data.get("listen_addr", "0.0.0.0:2377"),
    )


def save_membership(path: Path, membership: Membership) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(membership)))
    os.replace(tmp, path)
