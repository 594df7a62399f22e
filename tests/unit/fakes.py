"""Fakes of the node's I/O edges: a runtime whose tasks are futures, a recording data plane."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from collections.abc import Sequence
from pathlib import Path

from shoal.agent.exec.runtime import ExitStatus, TaskConfig, TaskRecord, TaskStartError
from shoal.mesh.overlay import OverlayPeer


class FakeRuntime:
    """Tasks 'run' until the test ends them with `exit(task_id, code)` or they are stopped."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.configs: dict[str, TaskConfig] = {}
        self.running: dict[str, asyncio.Future[ExitStatus]] = {}
        self.removed: set[str] = set()
        self.missing_programs: set[str] = set()

    async def ensure_node_network(self, gateway: ipaddress.IPv4Interface) -> None:
        self.gateway = gateway

    def close(self) -> None:
        self.closed = True

    async def start(self, cfg: TaskConfig) -> int:
        if cfg.argv[0] in self.missing_programs:
            raise TaskStartError(
                f'starting container failed: exec: "{cfg.argv[0]}": executable file not found'
                " in $PATH"
            )
        self.configs[cfg.task_id] = cfg
        self.running[cfg.task_id] = asyncio.get_running_loop().create_future()
        log = self.log_path(cfg.task_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(
            '{"time":"2026-01-01T00:00:00.000000000Z","stream":"stdout","log":"hello from '
            + cfg.env["SHOAL_TASK_NAME"]
            + '"}\n'
        )
        return 1000 + len(self.configs)

    def exit(self, task_id: str, code: int) -> None:
        self.running[task_id].set_result(ExitStatus(code, f"task exited with code {code}"))

    def alive(self) -> set[str]:
        return {t for t, f in self.running.items() if not f.done()}

    async def wait(self, task_id: str) -> ExitStatus:
        return await asyncio.shield(self.running[task_id])

    async def stop(self, task_id: str, grace: float) -> None:
        fut = self.running.get(task_id)
        if fut is not None and not fut.done():
            fut.set_result(ExitStatus(143, "task killed by signal 15"))

    async def remove(self, task_id: str) -> None:
        self.removed.add(task_id)

    async def purge(self, task_id: str) -> None:
        shutil.rmtree(self.state_dir / task_id, ignore_errors=True)

    def existing(self) -> list[TaskRecord]:
        return []

    def leftovers(self) -> list[str]:
        return []

    async def adopt(self, task_id: str) -> bool:
        return False

    def log_path(self, task_id: str) -> Path:
        return self.state_dir / task_id / "log.jsonl"


class RecordingOverlay:
    """An overlay that only records what it was asked (unit tests never touch the kernel)."""

    def __init__(self, underlay: str, subnet: str, port: int) -> None:
        self.underlay, self.subnet, self.port = underlay, subnet, port
        self.peers: list[OverlayPeer] = []
        self.applies = 0
        self.invalidated = 0
        self.closed = False

    @classmethod
    def factory(cls, underlay: str, subnet: str, port: int) -> RecordingOverlay:
        return cls(underlay, subnet, port)

    async def apply(self, peers: Sequence[OverlayPeer]) -> None:
        self.peers = [p for p in peers if p.subnet != self.subnet]
        self.applies += 1

    def invalidate(self) -> None:
        self.invalidated += 1

    async def close(self) -> None:
        self.closed = True
