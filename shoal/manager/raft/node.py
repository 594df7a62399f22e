"""RaftNode: the asyncio driver of one manager's Raft core (shoal/raft).

One task owns the core (`_drive`): every other coroutine talks to it by queueing a small
closure in the inbox (a received message, a proposal, a tick, a report), so the core is
only ever touched between two Readies. Each round it runs the inbox (messages first, then
ticks, so heartbeats that waited behind a slow fsync are seen before time advances), then
handles each Ready in the order the core demands (`rounds.py`):

    persist (SQLite, fsync if must_sync, on the storage's thread)  ->  send (queue per
    peer, one sender task each)  ->  apply (state machine, conf changes, futures)  ->
    advance

Proposals that arrive during an fsync are stepped together in the next round: one Ready,
one fsync for all of them (group commit). After the Readies, every `snapshot_every`
applied entries the state machine is snapshotted and the log compacted.

Leadership is announced to `on_leadership` callbacks only once the new leader has applied
the empty entry of its term: everything committed before is then applied locally, so a
reconciler or a write transaction started on `True` reads current state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import deque
from collections.abc import Callable

from shoal import timeouts, wakeups
from shoal.api.latency import LatencyRecord
from shoal.errors import InvalidArgument, Unavailable
from shoal.manager.raft.config import RaftNodeConfig, StateMachine
from shoal.manager.raft.errors import NotLeader
from shoal.manager.raft.leadership import LeadershipCallback, LeadershipNotifier
from shoal.manager.raft.membership import Membership
from shoal.manager.raft.outbox import Outbox
from shoal.manager.raft.pending import Proposals, Reads
from shoal.manager.raft.requests import Requests
from shoal.manager.raft.rounds import ReadyRounds
from shoal.manager.raft.storage import SQLiteStorage
from shoal.manager.raft.transport import Transport
from shoal.manager.raft.validate import refusal
from shoal.raft import (
    Config,
    ConfState,
    InvariantViolation,
    Message,
    MessageDecodeError,
    RaftError,
    RawNode,
    Status,
    decode_message,
)

__all__ = ["LeadershipCallback", "RaftNode"]

log = logging.getLogger(__name__)

_STOP_REPORT_AFTER = 5.0  # seconds a stop may take before the tasks holding it are logged


class _Stopped(Exception):
    pass


class RaftNode(ReadyRounds, Requests, Membership):
    """Drive one Raft member. `run()` inside the caller's TaskGroup, `stop()` to end it."""

    def __init__(
        self,
        node_id: int,
        storage: SQLiteStorage,
        transport: Transport,
        state_machine: StateMachine,
        config: RaftNodeConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or RaftNodeConfig()
        self.config.validate()
        self.id = node_id
        self._storage = storage
        self._transport = transport
        self._sm = state_machine
        snap = storage.snapshot()
        state_machine.restore(snap.data)
        self._applied = self._snap_index = snap.index
        c = self.config
        self._raw = RawNode(
            Config(
                id=node_id,
                rng=rng or random.Random(),
                election_tick=c.election_tick,
                heartbeat_tick=c.heartbeat_tick,
                idle_heartbeat_tick=c.idle_heartbeat_tick,
                applied=snap.index,
                max_size_per_msg=c.max_size_per_msg,
                max_inflight=c.max_inflight,
            ),
            storage,
        )
        self._inbox: deque[Callable[[], None]] = deque()
        self._ticks = 0  # ticks counted by the timer, for the driver to step
        self._parked = False  # the driver waits for work (the timer may tick itself)
        self._base = 0  # grid slot of the last tick counted (tick_interval's grid)
        self._due = 1  # the core's due tick, counted from _base (see _arm)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0
        self._tick_failed: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._retimed = asyncio.Event()
        self._changed = asyncio.Event()  # set after every round
        self._applied_moved = asyncio.Event()  # set after a round that applied something
        self._applied_mark = self._applied
        self._proposals = Proposals()
        self._reads = Reads()
        self.proposal_latency = LatencyRecord()  # read by shoal.observe.metrics
        self._read_seq = 0
        self._outbox = Outbox(node_id, transport, self.config.max_outbound, self.report_unreachable)
        self._lead_seen = 0
        self._term_start = (0, 0)  # (term, index) of the first entry of our leadership
        self._leadership = LeadershipNotifier(node_id)
        self._stop_requested = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._requests: set[asyncio.Future[int]] = set()
        self._last_heard: dict[int, float] = {}
        transport.bind(self)

    # --- introspection --------------------------------------------------------------------

    @property
    def leader_ready(self) -> bool:
        """Leader, and everything committed before its term is applied here."""
        term, index = self._term_start
        return self.is_leader and term == self._raw.term and self._applied >= index

    @property
    def leader_id(self) -> int:
        return self._raw.lead

    @property
    def term(self) -> int:
        return self._raw.term

    @property
    def applied(self) -> int:
        return self._applied

    @property
    def committed(self) -> int:
        return self._raw.committed

    @property
    def conf_state(self) -> ConfState:
        return self._raw.conf_state

    @property
    def running(self) -> bool:
        return self._running

    def status(self) -> Status:
        return self._raw.status()

    def reachability(self) -> dict[int, bool]:
        """Every other member: heard from within the last election timeout? On the leader
        this is `node ls`'s MANAGER STATUS (Reachable / Unreachable)."""
        cs = self._raw.conf_state
        horizon = asyncio.get_running_loop().time() - self.config.election_timeout
        return {
            i: self._last_heard.get(i, float("-inf")) >= horizon
            for i in (*cs.voters, *cs.learners)
            if i != self.id
        }

    def on_leadership(self, callback: LeadershipCallback) -> None:
        """`callback(True)` once this node leads with current state, `callback(False)` when
        it stops leading (or the node stops). Called in order, one at a time."""
        self._leadership.add(callback)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Return once `predicate()` holds (checked after every driver round); raise
        `Unavailable` after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0 or self._done.is_set():
                raise Unavailable(f"raft {self.id:x}: condition not reached in {timeout:.1f}s")
            try:
                await timeouts.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_applied(self, past: int, timeout: float) -> bool:
        """True once the applied index is beyond `past` (entries, conf changes or a
        snapshot applied here); False after `timeout` seconds or when the node stops.
        Rounds that apply nothing (heartbeats) do not wake the waiter, unlike
        `wait_until`: what only the store or the configuration can change waits here."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._applied <= past:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._done.is_set():
                return False
            try:
                await timeouts.wait_for(self._applied_moved.wait(), remaining)
            except TimeoutError:
                return False
        return True

    # --- life cycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until `stop()`; a broken invariant or storage failure ends it with the error."""
        if self._running or self._done.is_set():
            raise InvalidArgument(f"raft {self.id:x}: a RaftNode runs once")
        self._running = True
        try:
            async with asyncio.TaskGroup() as tg:
                self._outbox.start(tg)
                tg.create_task(self._ticker(), name=f"raft-{self.id:x}-tick")
                tg.create_task(self._drive(), name=f"raft-{self.id:x}-drive")
                tg.create_task(self._leadership.run(), name=f"raft-{self.id:x}-leadership")
                await self._stop_requested.wait()
                raise _Stopped
        except BaseExceptionGroup as eg:
            _, rest = eg.split(_Stopped)
            if rest is not None:
                log.error("raft %x: stopped by an error: %r", self.id, rest.exceptions[0])
                raise rest.exceptions[0] if len(rest.exceptions) == 1 else rest from None
        finally:
            self._running = False
            stopped = NotLeader("raft: node stopped", self._raw.lead)
            self._proposals.fail_all(stopped)
            self._reads.fail_all(stopped)
            for fut in list(self._requests):  # still in the inbox when the driver ended
                if not fut.done():
                    fut.set_exception(stopped)
            self._done.set()
            self._changed.set()
            await self._leadership.close()

    async def stop(self) -> None:
        self._stop_requested.set()
        if not self._running:
            return
        waited = 0.0
        while True:
            try:
                await timeouts.wait_for(asyncio.shield(self._done.wait()), _STOP_REPORT_AFTER)
                return
            except TimeoutError:
                waited += _STOP_REPORT_AFTER
                self._report_stuck(waited)

    def _report_stuck(self, waited: float) -> None:
        """A child that ignores cancellation keeps the node from stopping: say which and
        where (a hang with no trace is what a stop stuck under load looked like)."""
        prefix = f"raft-{self.id:x}-"
        for task in asyncio.all_tasks():
            if task.get_name().startswith(prefix) and not task.done():
                where = "".join(f"\n  {line}" for line in _awaiting(task.get_coro()))
                log.warning("raft %x: stop waited %.0fs on task %s:%s",
                            self.id, waited, task.get_name(), where)

    # --- requests ---------------------------------------------------------------------------

    async def receive(self, messages: list[Message]) -> None:
        """Messages from peers (the transport calls this). Malformed ones are dropped."""
        now = asyncio.get_running_loop().time()
        for m in messages:
            reason = refusal(m, self.id, self.config.max_message_bytes)
            if reason is not None:
                log.warning(
                    "raft %x: dropped %s from %x: %s", self.id, m.type.name, m.from_, reason
                )
                continue
            self._last_heard[m.from_] = now
            self._inbox.append(functools.partial(self._step, m))
        self._wake.set()

    async def receive_frames(self, frames: list[bytes]) -> None:
        """Raw msgpack frames from a peer: decoded with the size limit, garbage dropped."""
        messages = []
        for frame in frames:
            try:
                messages.append(decode_message(frame, max_size=self.config.max_message_bytes))
            except MessageDecodeError as exc:
                log.warning(
                    "raft %x: dropped a malformed frame (%d bytes): %s", self.id, len(frame), exc
                )
        await self.receive(messages)

    def report_unreachable(self, peer: int) -> None:
        self._submit(functools.partial(self._raw.report_unreachable, peer))

    def report_stream_lost(self, peer: int) -> None:
        """The transport's stream from `peer` ended (its process or host went away, or it
        rebuilt its channel). If `peer` is our leader we stop waiting for a whole election
        timeout to notice (`RawNode.forget_leader`); pre-vote makes a false alarm cheap."""

        def forget() -> None:
            if self._raw.lead == peer and peer != self.id:
                log.info("raft %x: stream from leader %x ended: forgetting it", self.id, peer)
                self._raw.forget_leader(peer)

        self._submit(forget)

    def report_snapshot(self, peer: int, ok: bool) -> None:
        self._submit(functools.partial(self._raw.report_snapshot, peer, ok=ok))

    def campaign(self) -> None:
        """Start an election now (a freshly bootstrapped single manager need not wait)."""
        self._submit(self._raw.campaign)

    def reconfigure(self, config: RaftNodeConfig) -> None:
        """Take `config` while running (a `swarm update` of SwarmSpec.Raft): the tick
        interval from the next tick, election/heartbeat ticks from the core's next tick,
        snapshot settings from the next round. InvalidArgument (nothing changed) when it
        is invalid or differs in more than `LIVE_FIELDS`."""
        self.config.check_live_change(config)
        old, self.config = self.config, config
        timing = (config.election_tick, config.heartbeat_tick, config.idle_heartbeat_tick)
        if (old.election_tick, old.heartbeat_tick) != timing[:2]:
            self._submit(functools.partial(self._raw.set_timing, *timing))
        if old.tick_interval != config.tick_interval:
            self._retimed.set()  # the sleeping ticker starts over with the new interval
        if old != config:
            log.info("raft %x: reconfigured: %s", self.id, config.describe())

    # --- inbox actions (run by the driver, between Readies) ------------------------------

    def _submit(self, action: Callable[[], None]) -> None:
        self._inbox.append(action)
        self._wake.set()

    def _step(self, m: Message) -> None:
        try:
            self._raw.step(m)
        except InvariantViolation:
            raise
        except (RaftError, InvalidArgument) as exc:
            log.warning("raft %x: dropped %s from %x: %s", self.id, m.type.name, m.from_, exc)

    # --- the driver -----------------------------------------------------------------------

    async def _ticker(self) -> None:
        """Own the tick timer (`_arm`, `_fire`) and start it over when the tick interval
        changes. Ticks are grid slots of the daemon's timer grid (`shoal.wakeups`: gossip's
        timers fire at the same instants). The timer sleeps until the core's next due tick
        (`RawNode.ticks_until_due`), at most `max_sleep_ticks` ahead: the quiet ticks before
        it are stepped in a burst when it fires, or before the next input (`_catch_up`),
        never past the due one. A timer that fires more than half a tick late (the loop
        stalled) counts one tick, whatever it slept: a stall slows Raft's clock instead of
        replaying a burst of ticks that would fire elections (raft-driver.md "Due ticks")."""
        loop = asyncio.get_running_loop()
        self._tick_failed = loop.create_future()
        self._restart_clock(loop.time())
        try:
            while True:
                self._retimed.clear()
                retimed = asyncio.ensure_future(self._retimed.wait())
                try:
                    await asyncio.wait(
                        (self._tick_failed, retimed), return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    retimed.cancel()
                if self._tick_failed.done():
                    self._tick_failed.result()  # raises
                self._restart_clock(loop.time())  # reconfigured: a fresh interval from now
        finally:
            self._tick_failed = None  # no timer from here on (`_arm` checks)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _restart_clock(self, now: float) -> None:
        self._base = wakeups.grid_floor(now, self.config.tick_interval)
        self._due = 1
        self._arm(self._base + 1)

    def _arm(self, target: int | None = None) -> None:
        """Set the tick timer for grid slot `target`, by default the core's due tick (at
        most `max_sleep_ticks` after the last tick counted)."""
        if self._tick_failed is None:
            return  # the ticker has not started, or has ended
        if target is None:
            self._due = self._raw.ticks_until_due()
            target = self._base + min(self._due, self.config.max_sleep_ticks)
        if self._timer is not None:
            if self._timer_slot == target:
                return
            self._timer.cancel()
        self._timer_slot = target
        loop = asyncio.get_running_loop()
        when = wakeups.grid_time(target, self.config.tick_interval)
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        interval = self.config.tick_interval
        now = loop.time()
        wakeups.ride(now)  # slow polls asleep in sleep_riding wake with this tick
        target = self._timer_slot
        if now - wakeups.grid_time(target, interval) > interval / 2:  # a stall: one tick
            ticks = 1
            self._base = max(self._base, target, wakeups.grid_floor(now, interval))
        else:
            # a catch-up may have counted past an intermediate target (never a due one)
            ticks, self._base = max(0, target - self._base), max(self._base, target)
            if not ticks:
                self._arm(self._base + 1 if self._ticks else None)
                return
        if not self._parked or self._inbox or self._ticks:
            self._ticks += ticks  # the driver steps them after its inbox
            self._wake.set()
            self._arm(self._base + 1)  # busy rounds still count time tick by tick
            return
        raw = self._raw
        try:
            for _ in range(ticks):
                raw.tick()
        except BaseException as exc:  # the driver's error, as if it had ticked
            if self._tick_failed is not None and not self._tick_failed.done():
                self._tick_failed.set_exception(exc)
            return
        if raw.has_ready() or raw.lead != self._lead_seen:
            self._wake.set()  # the driver's round re-arms
        else:
            self._arm()

    def _catch_up(self) -> None:
        """Before an input: step the quiet ticks that passed since the last one counted,
        never the due tick (its timer does that), so the input meets the core at the time
        it arrived."""
        if self._ticks or self._timer is None:
            return
        now = asyncio.get_running_loop().time()
        ticks = min(wakeups.grid_floor(now, self.config.tick_interval) - self._base, self._due - 1)
        if ticks <= 0:
            return
        raw = self._raw
        for _ in range(ticks):
            raw.tick()
        self._base += ticks
        self._due -= ticks

    async def _drive(self) -> None:
        raw = self._raw
        while True:
            if not self._inbox and not self._ticks:
                self._wake.clear()
                self._parked = True
                try:
                    await self._wake.wait()
                finally:
                    self._parked = False
            if self._inbox:
                self._catch_up()
            while self._inbox:
                self._inbox.popleft()()
            ticks, self._ticks = self._ticks, 0
            for _ in range(ticks):
                raw.tick()
            while raw.has_ready():
                await self._handle_ready(raw.ready())
            await self._maybe_snapshot()
            self._after_round()
            if not self._ticks:  # else the timer set by _fire ticks on until they are stepped
                self._arm()

    # --- used by Membership -------------------------------------------------------------

    def _submit_transfer(self, to: int) -> None:
        self._submit(functools.partial(self._raw.transfer_leadership, to))


def _awaiting(coro: object) -> list[str]:
    """file:line function of each coroutine `coro` awaits, outermost first (a suspended
    task's `get_stack()` shows only its own frame)."""
    lines: list[str] = []
    while coro is not None and len(lines) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        nxt = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if nxt is None and frame is None:
            lines.append(repr(coro))
        coro = nxt
    return lines
