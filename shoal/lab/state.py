"""The lab's record of itself: /run/shoal-lab/state.json.

It says what `lab up` built (how many nodes, how many of them are meant to be managers) and,
per host, the pid of its daemon, whether it is powered on and whether its fabric link is cut.
It is written atomically (temporary file + rename) after every change. `lab down` does not
need it: it sweeps by name patterns, so a lost or stale state file never leaves debris.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HostRecord", "LabState", "load_state", "save_state"]


@dataclass
class HostRecord:
    role: str  # "manager" or "worker": what the host is meant to be in the swarm
    pid: int | None = None  # of its daemon, None while powered off
    powered: bool = True
    cut: bool = False


@dataclass
class LabState:
    nodes: int
    managers: int
    swarm: bool = False  # swarm init done on h1
    hosts: dict[str, HostRecord] = field(default_factory=dict)
    client_cut: bool = False
    registry_pid: int | None = None  # the lab registry's docker-registry (198.18.0.3:5000)
    # hosts meant to be managers that joined as workers (managers cannot join without Raft)
    not_managers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        hosts = {name: HostRecord(**rec) for name, rec in data.get("hosts", {}).items()}
        return cls(
            nodes=int(data["nodes"]),
            managers=int(data["managers"]),
            swarm=bool(data.get("swarm", False)),
            hosts=hosts,
            client_cut=bool(data.get("client_cut", False)),
            not_managers=list(data.get("not_managers", [])),
        )


def load_state(path: Path) -> LabState | None:
    """The saved state, None if there is none (or it is unreadable)."""
    try:
        return LabState.from_json(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def save_state(path: Path, state: LabState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, path)
