"""The kernel data plane: nftables (`table inet shoal`), planned by the change.

`apply_delta(state, delta)` (what `MeshSync` calls) replans only the services the delta
names (`plan_delta.py`, pure), sends the kernel the transaction of their ports alone, and
returns: the conntrack entries of backends that left (UDP flows, half-open TCP connections)
are deleted right after, in the background (one deletion walks the kernel's whole
conntrack hash, ~10 ms, more than the transaction); the next apply, and `close`, wait for
them first, so deletions never overtake a later transaction. `flushed()` waits for them.
`apply(state)` finds the changed services itself (a comparison of the two states per
service). The first apply of a process, and the next apply after a failure, plan the whole
state and replace the table whole: the kernel may hold rules from an earlier daemon.

nft runs in-process through libnftables (`nftlib.py`) where the library is there: small
transactions on the event loop, a whole table's in a thread (with its planning) so a big
first apply does not stall the daemon; else as `nft -f -`. conntrack deletions go through
netlink (`conntrack_nl.py`), else `conntrack -R -`. Passing `nft=`/`conntrack=` paths other
than the default programs selects the programs (tests use stand-ins).

Safety: it works in the *current* network namespace and refuses the initial one (the real
host) unless SHOAL_ALLOW_ROOT_NETNS=1, so tests and labs cannot touch the host's firewall.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import TypeVar

from shoal.mesh import conntrack_nl, nftlib
from shoal.mesh import plan as planner
from shoal.mesh.errors import MeshError
from shoal.mesh.model import MeshDelta, MeshState, changed_services, service_groups
from shoal.mesh.plan_delta import DeltaPlanner
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


T = TypeVar("T")


async def _in_thread(work: Callable[[], T]) -> T:
    """`work()` in a thread; a cancelled caller still waits for it to end (the lock it holds
    guards the planner and the libnftables context the thread uses)."""
    future = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


# a transaction longer than this runs in a thread (libnftables blocks while it works)
INLINE_LINES = 200


class KernelDataPlane:
    """`DataPlane` on nftables in the current network namespace (see module docstring)."""

    def __init__(
        self,
        table: str = "shoal",
        nft: str = "nft",
        *,
        conntrack: str | None = "conntrack",
        library: bool | None = None,
    ) -> None:
        """`library`: run nft through libnftables and conntrack through netlink where they
        work (None: when `nft` and `conntrack` are the default programs)."""
        self._table = table
        self._nft = nft
        self._conntrack = conntrack
        self._batch_conntrack = True  # until `conntrack -R -` is refused once
        self._lock = asyncio.Lock()
        self._known = False  # do we know what the kernel holds? (not before the first apply)
        self._planner = DeltaPlanner(table)
        self._state: MeshState | None = None  # the last state applied (None: none, or closed)
        self._problems: tuple[str, ...] = ()
        self._table_open = False  # whether the last apply left a table (read by traffic())
        auto = library is None
        self._use_lib = library if library is not None else nft == "nft"
        self._lib: nftlib.NftLib | None = None
        self._lib_tried = False
        self._netlink_ct = (library if not auto else conntrack == "conntrack") and (
            conntrack is not None)
        self.last_script = ""  # the last transaction sent (for `shoal` debugging and tests)
        self.last_full = False  # whether the last apply planned the whole state
        self._flushing: asyncio.Task[None] | None = None  # the last apply's deletions

    @property
    def in_process(self) -> bool:
        """Whether nft runs through libnftables (known after the first transaction)."""
        return self._lib is not None

    async def flushed(self) -> None:
        """Wait until the conntrack deletions of the last apply are done (best effort:
        they never raise)."""
        task = self._flushing
        if task is not None:
            await asyncio.shield(task)

    async def apply(self, state: MeshState) -> None:
        async with self._lock:
            await self.flushed()
            delta = None
            if self._known and self._state is not None:
                services = changed_services(service_groups(self._state), service_groups(state))
                delta = MeshDelta(self._state, services)
            await self._apply(state, delta)

    async def apply_delta(self, state: MeshState, delta: MeshDelta | None) -> None:
        """`apply(state)`, knowing that only `delta.services` changed since `delta.base`; a
        `base` other than the state this plane applied last is planned whole."""
        async with self._lock:
            await self.flushed()
            await self._apply(state, delta)

    async def _apply(self, state: MeshState, delta: MeshDelta | None) -> None:
        self._guard()
        self._load_lib()
        by_change = self._known and delta is not None and delta.base is self._state
        try:
            if by_change:
                assert delta is not None
                result = self._planner.delta(state, delta.services)
                script, flushes, problems = result.script, result.flushes, result.problems
                self.last_full = result.full
                big = result.full or script.count("\n") > INLINE_LINES
                if script:
                    await self._run_nft(script, in_thread=big)
            else:
                self.last_full = True
                script, problems = await self._replace(state)
                flushes = ()  # the kernel held who knows what: nothing known to flush
        except BaseException:
            self._known = False  # the kernel and the planner may disagree: rebuild whole
            raise
        self._report(problems)
        if script:
            self.last_script = script
        self._known, self._state = True, state
        self._table_open = self._planner.has_ports
        if flushes:
            self._flushing = asyncio.ensure_future(self._flush_quietly(flushes))

    async def _flush_quietly(self, flushes: tuple[tuple[str, ...], ...]) -> None:
        try:
            await self._flush_conntrack(flushes)
        except Exception:  # stale flows stay until they expire; the rules are in
            log.exception("mesh: deleting conntrack entries failed")

    async def _replace(self, state: MeshState) -> tuple[str, tuple[str, ...]]:
        """Plan `state` whole and replace the table with it: in a thread with libnftables
        (planning 10,000 endpoints and loading their rules takes a while)."""

        def work() -> tuple[str, tuple[str, ...]]:
            result = self._planner.full(state)
            script = planner.transaction(None, result.ruleset, self._table, prev_known=False)
            if self._lib is not None:
                self._lib.run(script)
            return script, result.problems

        if self._lib is not None:
            return await _in_thread(work)
        result = self._planner.full(state)
        script = planner.transaction(None, result.ruleset, self._table, prev_known=False)
        await self._run_nft(script, in_thread=True)
        return script, result.problems

    async def close(self) -> None:
        async with self._lock:
            await self.flushed()
            self._guard()
            self._load_lib()
            await self._run_nft(
                planner.transaction(None, None, self._table, prev_known=False), in_thread=False
            )
            self._known, self._state, self._table_open = False, None, False

    async def traffic(self) -> dict[tuple[str, int], PortTraffic]:
        """Connections and bytes per (protocol, published port) since it opened here: the
        counters of the table's counting sets (`traffic.py`), read with one `nft -j list`."""
        # not the planner's own state: a whole-table apply may be planning in a thread
        if self._state is None or not self._known or not self._table_open:
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

    def _load_lib(self) -> None:
        """The libnftables context, made at the first transaction (in the namespace the
        plane programs); tried once."""
        if self._use_lib and not self._lib_tried:
            self._lib_tried = True
            self._lib = nftlib.load()
            log.info("mesh: nft runs %s", "in-process (libnftables)" if self._lib
                     else f"as the {self._nft} program (libnftables not found)")

    async def _run_nft(self, script: str, *, in_thread: bool) -> None:
        lib = self._lib
        if lib is not None:
            if in_thread:
                await _in_thread(lambda: lib.run(script))
            else:
                lib.run(script)
            return
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
        """Through netlink where it works (`conntrack_nl`); else the program."""
        if not flushes:
            return
        deletions = None
        if self._netlink_ct:
            with contextlib.suppress(ValueError):  # a flag netlink does not do: the program
                deletions = [conntrack_nl.parse(f) for f in flushes]
        if deletions is not None and (
            len(conntrack_nl.dumps(deletions)) <= conntrack_nl.MAX_DELETIONS
        ):
            try:
                await conntrack_nl.delete(deletions)
                return
            except Exception as exc:
                log.info("mesh: conntrack over netlink failed (%s): conntrack(8) from now on",
                         exc)
                self._netlink_ct = False
        await self._flush_conntrack_program(flushes)

    async def _flush_conntrack_program(self, flushes: tuple[tuple[str, ...], ...]) -> None:
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
