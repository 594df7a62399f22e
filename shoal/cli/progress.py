"""Convergence progress of `service create/update/scale/rollback`, like docker's.

The loop (`wait_on_service`) polls what docker polls, every 200 ms:
`GET /services/{ref}?insertDefaults=false`, the service's up-to-date tasks and `GET /nodes`,
and stops once every slot runs and stayed so for the verify period (`UpdateConfig.Monitor`,
5 s by default, `$SHOAL_CONVERGE_MONITOR` seconds when set), when the update status says
completed, or fails when it says paused. The updaters are docker's (`cli/command/service/
progress`) and pure: from a service, its tasks and the active nodes they compute what to
show. `ProgressWriter` draws it like docker's jsonmessage display: on a terminal one line per
ID redrawn in place with a bar; otherwise a line each time an ID's text changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from shoal.cli.context import ApiClient, CliContext
from shoal.cli.format import truncate_id
from shoal.errors import ShoalError

__all__ = [
    "GlobalProgress",
    "ProgressWriter",
    "ReplicatedProgress",
    "numbered_state",
    "wait_on_service",
]

_RANKS = {
    "new": 1, "allocated": 2, "pending": 3, "assigned": 4, "accepted": 5, "preparing": 6,
    "ready": 7, "starting": 8, "running": 9,
    "complete": 10, "shutdown": 11, "failed": 12, "rejected": 13,
}  # fmt: skip
_LONGEST = max(len(s) for s, r in _RANKS.items() if r <= 9 or s == "complete")
MAX_PROGRESS = 9
MAX_BARS = 20


def numbered_state(state: str | None) -> int:
    """docker's rank of a task state; 0 (ignored) for remove, orphaned and unknown states."""
    return _RANKS.get(state or "", 0)


def _terminal(state: str | None) -> bool:
    return numbered_state(state) > _RANKS["running"]


class ProgressWriter:
    """Docker's progress display: `ID: action [bar]` lines, redrawn in place on a TTY."""

    def __init__(self, write: Callable[[str], None], tty: bool, width: int = 200) -> None:
        self._write = write
        self.tty = tty
        self.width = width
        self._ids: dict[str, int] = {}

    def progress(self, ident: str, action: str, current: int = 0, total: int = 0) -> None:
        if not self.tty:
            # docker's display off a terminal (28.2, seen on a lab): every message as a
            # line, repeats and the initial blank `1/3:  ` included, but none that carries
            # a progress bar (a task's state)
            if total <= 0:
                self._write(f"{ident}: {action}\n")
            return
        line = self._ids.get(ident)
        if line is None:
            line = self._ids[ident] = len(self._ids)
            self._write("\n")
        diff = len(self._ids) - line
        up = f"\x1b[{diff}A" if diff else ""
        down = f"\x1b[{diff}B" if diff else ""
        self._write(f"{up}\x1b[2K\r{ident}: {action} {self._bar(current, total)}\r{down}")

    def message(self, ident: str, text: str) -> None:
        """A line outside the redrawn block (docker then forgets the block's lines)."""
        self._ids.clear()
        self._write(f"{ident}: {text}\n" if ident else f"{text}\n")

    def _bar(self, current: int, total: int) -> str:
        if (current <= 0 and total <= 0) or total <= 0 or self.width <= 110:
            return ""
        filled = min(int(current / total * 100) // 2, 50)
        return f"[{'=' * filled}>{' ' * (50 - filled)}] "


def _overall(out: ProgressWriter, running: int, desired: int, rollback: bool) -> None:
    if rollback:
        out.progress("overall progress", f"rolling back update: {running} out of {desired} tasks")
    else:
        out.progress("overall progress", f"{running} out of {desired} tasks")


def _trunc_error(message: str) -> str:
    message = message.replace("\n", " ")
    return message[:74] + "…" if len(message) > 75 else message


def _state(task: Mapping[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State") or "")


def _prefer(existing: Mapping[str, Any] | None, task: Mapping[str, Any]) -> bool:
    """Whether `task` replaces `existing` for its slot/node: the lower desired state wins."""
    if existing is None:
        return True
    old_d, new_d = (
        numbered_state(existing.get("DesiredState")),
        numbered_state(task.get("DesiredState")),
    )
    if old_d < new_d:
        return False
    return not (old_d == new_d and numbered_state(_state(existing)) <= numbered_state(_state(task)))


def _write_task(out: ProgressWriter, ident: str, task: Mapping[str, Any]) -> None:
    err = (task.get("Status") or {}).get("Err") or ""
    if err:
        out.progress(ident, _trunc_error(err))
    elif not _terminal(task.get("DesiredState")) and not _terminal(_state(task)):
        state = _state(task)
        out.progress(ident, state.ljust(_LONGEST), numbered_state(state), MAX_PROGRESS)


def _is_running(task: Mapping[str, Any]) -> bool:
    return not _terminal(task.get("DesiredState")) and _state(task) == "running"


class ReplicatedProgress:
    """Slot bars `1/3: running [====>]` and `overall progress: N out of M tasks`."""

    def __init__(self, out: ProgressWriter) -> None:
        self.out = out
        self.slot_map: dict[int, int] = {}
        self.initialized = False
        self.done = False

    def update(
        self, service: Mapping[str, Any], tasks: list[Any], active: set[str], rollback: bool
    ) -> bool:
        replicas = _replicas(service)
        if replicas is None:
            raise ShoalError("no replica count")
        if not self.initialized:
            _overall(self.out, 0, replicas, rollback)
            if replicas <= MAX_BARS:
                for i in range(1, replicas + 1):
                    self.out.progress(f"{i}/{replicas}", " ")
            self.initialized = True
        by_slot: dict[int, Mapping[str, Any]] = {}
        for task in tasks:
            if not numbered_state(task.get("DesiredState")) or not numbered_state(_state(task)):
                continue
            slot = int(task.get("Slot") or 0)
            if not _prefer(by_slot.get(slot), task):
                continue
            if task.get("NodeID") and task["NodeID"] not in active:
                continue
            by_slot[slot] = task
        if self.done and any(_state(t) != "running" for t in by_slot.values()):
            self.done = False
        running = 0
        for slot in sorted(by_slot):
            task = by_slot[slot]
            mapped = self.slot_map.setdefault(slot, len(self.slot_map) + 1)
            running += _is_running(task)
            if not self.done and replicas <= MAX_BARS and mapped <= replicas:
                _write_task(self.out, f"{mapped}/{replicas}", task)
        if not self.done:
            _overall(self.out, running, replicas, rollback)
            self.done = running == replicas
        return running == replicas


class GlobalProgress:
    """One bar per node (truncated node ID); the node count is that of up-to-date tasks."""

    def __init__(self, out: ProgressWriter) -> None:
        self.out = out
        self.initialized = False
        self.done = False

    def update(
        self, service: Mapping[str, Any], tasks: list[Any], active: set[str], rollback: bool
    ) -> bool:
        by_node: dict[str, Mapping[str, Any]] = {}
        for task in tasks:
            if not numbered_state(task.get("DesiredState")) or not numbered_state(_state(task)):
                continue
            node = str(task.get("NodeID") or "")
            if _prefer(by_node.get(node), task):
                by_node[node] = task
        count = len(by_node)
        if not self.initialized:
            if count == 0:
                self.out.progress("overall progress", "waiting for new tasks")
                return False
            _overall(self.out, 0, count, rollback)
            self.initialized = True
        if self.done and any(_state(t) != "running" for t in by_node.values()):
            self.done = False
        running = 0
        for node in sorted(by_node):
            if node not in active:
                continue
            task = by_node[node]
            running += _is_running(task)
            if not self.done and count <= MAX_BARS:
                _write_task(self.out, truncate_id(node), task)
        if not self.done:
            _overall(self.out, running, count, rollback)
            self.done = running == count
        return running == count


def _replicas(service: Mapping[str, Any]) -> int | None:
    mode = (service.get("Spec") or {}).get("Mode") or {}
    replicated = mode.get("Replicated")
    if isinstance(replicated, dict) and replicated.get("Replicas") is not None:
        return int(replicated["Replicas"])
    return None


def _updater(
    service: Mapping[str, Any], out: ProgressWriter
) -> ReplicatedProgress | GlobalProgress:
    mode = (service.get("Spec") or {}).get("Mode") or {}
    if _replicas(service) is not None:
        return ReplicatedProgress(out)
    if mode.get("Global") is not None:
        return GlobalProgress(out)
    raise ShoalError("unrecognized service mode")


def _monitor_seconds(service: Mapping[str, Any], environ: Mapping[str, str]) -> float:
    override = environ.get("SHOAL_CONVERGE_MONITOR")
    if override:
        try:
            return max(0.0, float(override))
        except ValueError:
            pass
    update = (service.get("Spec") or {}).get("UpdateConfig") or {}
    monitor = update.get("Monitor") or 0
    return monitor / 1e9 if monitor else 5.0


def _task_error(client: ApiClient, service_id: str) -> str:
    """The error of a failed up-to-date task, to say why an update paused."""
    filters = {"service": {service_id: True}, "_up-to-date": {"true": True}}
    tasks = client.get("/tasks", params={"filters": _compact(filters)}) or []
    return next((str(t["Status"]["Err"]) for t in tasks if (t.get("Status") or {}).get("Err")), "")


def _check_update_status(client: ApiClient, service: Mapping[str, Any]) -> tuple[str, str]:
    status = service.get("UpdateStatus") or {}
    state, message = str(status.get("State") or ""), str(status.get("Message") or "")
    if state in ("paused", "rollback_paused"):
        what = "update" if state == "paused" else "rollback"
        error = _task_error(client, str(service.get("ID") or ""))
        detail = f" ({error})" if error and error not in message else ""
        raise ShoalError(f"service {what} paused: {message}{detail}")
    return state, message


def wait_on_service(
    cli: CliContext, client: ApiClient, ref: str, out: ProgressWriter, timeout: float | None = None
) -> None:
    """Poll until `ref` converges like docker's ServiceProgress; ShoalError on failure."""
    deadline = None if timeout is None else cli.monotonic() + timeout
    updater: ReplicatedProgress | GlobalProgress | None = None
    converged, converged_at, rollback = False, None, False
    final: str | None = None
    try:
        while True:
            service = client.get(f"/services/{ref}", params={"insertDefaults": "false"})
            monitor = _monitor_seconds(service, cli.environ)
            if service.get("JobStatus") is not None:
                return  # jobs are not followed (shoal runs services)
            if updater is None:
                updater = _updater(service, out)
            state, message = _check_update_status(client, service)
            if state == "updating":
                rollback = False
            elif state == "completed" and not converged:
                return
            elif state == "rollback_started":
                if not rollback and message:
                    out.progress("rollback", message)
                rollback = True
            elif state == "rollback_completed":
                if not converged:
                    final = message
                rollback = True
            now = cli.monotonic()
            if converged and converged_at is not None and now - converged_at >= monitor:
                out.progress("verify", f"Service {ref} converged")
                if final:
                    out.message("rollback", final)
                return
            filters = {"service": {service["ID"]: True}, "_up-to-date": {"true": True}}
            tasks = client.get("/tasks", params={"filters": _compact(filters)}) or []
            nodes = client.get("/nodes") or []
            active = {n["ID"] for n in nodes if (n.get("Status") or {}).get("State") != "down"}
            converged = updater.update(service, tasks, active, rollback)
            if converged:
                # docker: convergedAt = time.Now(), then 1+int(monitor - time.Since(it)):
                # read the clock again, so a 5 s monitor says "Waiting 5 seconds" first
                converged_at = cli.monotonic() if converged_at is None else converged_at
                wait = monitor - (cli.monotonic() - converged_at)
                if wait >= 0:
                    out.progress(
                        "verify",
                        f"Waiting {int(wait) + 1} seconds to verify that tasks are stable...",
                    )
            else:
                if converged_at is not None:
                    out.progress("verify", "Detected task failure")
                converged_at = None
            if deadline is not None and now >= deadline:
                raise ShoalError(f"timed out waiting for service {ref} to converge")
            cli.sleep(0.2)
    except KeyboardInterrupt:
        if not converged:
            out.message("", "Operation continuing in background.")
            out.message("", f"Use `shoal service ps {ref}` to check progress.")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
