"""The kernel data plane: nftables (`table inet shoal`) programmed with `nft -f -`.

Each `apply` plans the whole state (`plan.py`, pure), sends the kernel only the difference
from what it applied last (one atomic `nft -f -` transaction), then deletes the conntrack
entries of backends that left (UDP flows, half-open TCP connections), all in one
`conntrack -R -`. The first apply of
a process, and the next apply after a failure, replace the table whole: the kernel may hold
rules from an earlier daemon.

Safety: it works in the *current* network namespace and refuses the initial one (the real
host) unless SHOAL_ALLOW_ROOT_NETNS=1, so tests and labs cannot touch the host's firewall.
"""

from __future__ import annotations

import asyncio
import logging
import os

from shoal.mesh import plan as planner
from shoal.mesh.errors import MeshError
from shoal.mesh.model import MeshState
from shoal.mesh.plan_cache import PlanCache
from shoal.mesh.traffic import PortTraffic, parse_counters

__all__ = ["KernelDataPlane", "in_root_netns"]

log = logging.getLogger(__name__)

# The initial network namespace has this fixed inode (PROC_NET_INIT_INO in the kernel).
_INIT_NET_INODE = 0xEFFFFFF9


def in_root_netns() -> bool:
    """Whether this process runs in the initial network namespace.

    Compares with PID 1's namespace, or with kthreadd's (PID 2: kernel threads always live in
    the initial namespace) where PID 1's cannot be read, else with the fixed inode.
    """
    own = os.stat("/proc/self/ns/net")
    for pid in (1, 2):
        try:
            other = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        return (own.st_dev, own.st_ino) == (other.st_dev, other.st_ino)
    return own.st_ino == _INIT_NET_INODE


class KernelDataPlane:
    """`DataPlane` on nftables in the current network namespace (see module docstring)."""

    def __init__(
        self, table: str = "shoal", nft: str = "nft", *, conntrack: str | None = "conntrack"
    ) -> None:
        self._table = table
        self._nft = nft
        self._conntrack = conntrack
        self._batch_conntrack = True  # until `conntrack -R -` is refused once
        self._lock = asyncio.Lock()
        self._known = False  # do we know what the kernel holds? (not before the first apply)
        self._applied: planner.Ruleset | None = None
        self._cache = PlanCache()  # planning follows the change, not the table
        self._ports: tuple[planner.PortPlan, ...] = ()
        self._problems: tuple[str, ...] = ()
        self.last_script = ""  # the last transaction sent (for `shoal` debugging and tests)

    async def apply(self, state: MeshState) -> None:
        async with self._lock:
            self._guard()
            result = planner.plan(state, self._table, self._cache)
            self._report(result.problems)
            script = planner.transaction(
                self._applied, result.ruleset, self._table, prev_known=self._known
            )
            if script:
                try:
                    await self._run_nft(script)
                except MeshError:
                    self._known = False  # rebuild whole next time
                    raise
                self.last_script = script
            flushes = planner.conntrack_flushes(self._ports if self._known else None,
                                                result.ports)
            self._known, self._applied, self._ports = True, result.ruleset, result.ports
            await self._flush_conntrack(flushes)

    async def close(self) -> None:
        async with self._lock:
            self._guard()
            await self._run_nft(planner.transaction(None, None, self._table, prev_known=False))
            self._known, self._applied, self._ports = True, None, ()

    async def traffic(self) -> dict[tuple[str, int], PortTraffic]:
        """Connections and bytes per (protocol, published port) since it opened here: the
        counters of the table's counting sets (`traffic.py`), read with one `nft -j list`."""
        if self._applied is None or not self._known:
            return {}
        try:
            proc = await asyncio.create_subprocess_exec(
                self._nft, "-j", "list", "table", "inet", self._table,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise MeshError(f"mesh: cannot run {self._nft}: {exc}") from exc
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise MeshError(f"nft: {err.decode(errors='replace').strip()}")
        return parse_counters(out.decode(errors="replace"))

    def _guard(self) -> None:
        if os.environ.get("SHOAL_ALLOW_ROOT_NETNS") == "1":
            return
        if in_root_netns():
            raise MeshError(
                "mesh: refusing to program nftables in the initial network namespace "
                "(run the node in its own namespace, or set SHOAL_ALLOW_ROOT_NETNS=1)"
            )

    def _report(self, problems: tuple[str, ...]) -> None:
        if problems != self._problems:
            for problem in problems:
                log.warning("mesh: %s", problem)
            self._problems = problems

    async def _run_nft(self, script: str) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                self._nft, "-f", "-",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise MeshError(f"mesh: cannot run {self._nft}: {exc}") from exc
        out, err = await proc.communicate(script.encode())
        if proc.returncode != 0:
            message = (err or out).decode(errors="replace").strip()
            log.debug("mesh: nft failed on:\n%s", script)
            raise MeshError(f"nft: {message or f'exit status {proc.returncode}'}")

    async def _flush_conntrack(self, flushes: tuple[tuple[str, ...], ...]) -> None:
        """Several deletions in one `conntrack -R -` (conntrack-tools >= 1.4.6 reads commands
        from stdin): a node whose 60 backends left at once (a suspected peer) ran 60
        processes per apply, ~25 % of its loop in a task burst. Where the batch is not
        understood, one process per deletion as before."""
        if len(flushes) <= 1 or self._conntrack is None or not self._batch_conntrack:
            await asyncio.gather(*(self._run_conntrack(args) for args in flushes))
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                self._conntrack, "-R", "-",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("mesh: cannot run %s (stale flows stay): %s", self._conntrack, exc)
            self._conntrack = None
            return
        lines = "".join(" ".join(args) + "\n" for args in flushes)
        _, err = await proc.communicate(lines.encode())
        text = err.decode(errors="replace").strip()
        if proc.returncode in (0, 1) and "error" not in text.lower():
            return
        log.info("mesh: conntrack -R - failed (%s): one call per deletion from now on", text)
        self._batch_conntrack = False
        await asyncio.gather(*(self._run_conntrack(args) for args in flushes))

    async def _run_conntrack(self, args: tuple[str, ...]) -> None:
        """Best effort: a missing tool or no matching entry must not fail the apply."""
        if self._conntrack is None:
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                self._conntrack, *args,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("mesh: cannot run %s (stale flows stay): %s", self._conntrack, exc)
            self._conntrack = None
            return
        _, err = await proc.communicate()
        text = err.decode(errors="replace")
        # conntrack exits 1 when nothing matched; that is the common case, not a failure
        if proc.returncode not in (0, 1) or "error" in text.lower():
            log.warning("mesh: conntrack %s: %s", " ".join(args), text.strip())
