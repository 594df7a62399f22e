"""The asyncio driver of the gossip core: 7946/udp and /tcp, encrypted, on a real clock.

`GossipNode` binds one UDP socket (probes, acks, piggybacked broadcasts) and one TCP
listener (push-pull state exchanges) on the same port, ticks the pure `Swim` core every
`tick` seconds and carries out what it asks: packets are msgpack-encoded, sealed with the
keyring's primary key and sent; push-pulls are length-prefixed sealed frames over short TCP
connections. Anything that fails to authenticate or decode is dropped with a rate-limited
log line: a stranger's or a broken packet never stops the node.

Shape: `__init__(options, keyring, table)`, `async run()` (inside the caller's TaskGroup),
`await started()`, `await join(addrs)`, `reconcile(...)`, `async stop(leave=True)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from shoal import wakeups
from shoal.errors import Conflict, InvalidArgument
from shoal.gossip.codec import (
    MAX_STREAM,
    decode_packet,
    decode_push_pull,
    encode_packet,
    encode_push_pull,
)
from shoal.gossip.config import GossipConfig
from shoal.gossip.core import MemberEvent, SendPacket, Swim
from shoal.gossip.crypto import OVERHEAD, Keyring
from shoal.gossip.errors import GossipPacketError
from shoal.gossip.members import MemberStatus
from shoal.gossip.messages import Ack, Packet, Ping
from shoal.gossip.ratelimit import RateLimitedLog
from shoal.gossip.table import EndpointTable
from shoal.wakeups import PHASE, grid_slot, grid_time

__all__ = ["GossipNode", "GossipOptions", "MemberView"]

log = logging.getLogger(__name__)
_LEN = struct.Struct("!I")
_UDP, _TCP = b"udp", b"tcp"
_DOCTOR_SEQ = 2**61  # the doctor's pings use seqs far above the core's own
_DENSE_WINDOW = 10  # probe periods of ticking every period after a late tick or a change


@dataclass(frozen=True)
class GossipOptions:
    node_id: str
    bind_host: str = "0.0.0.0"
    port: int = 7946  # 0: any free port (tests)
    advertise_host: str | None = None  # the address other nodes reach this one at
    tick: float = 0.1  # seconds per core tick
    config: GossipConfig = field(default_factory=GossipConfig)
    stream_timeout: float = 5.0  # seconds for one push-pull exchange
    leave_timeout: float = 2.0  # seconds to spread a leave before closing
    max_push_pulls: int = 4  # concurrent outgoing push-pulls


@dataclass(frozen=True)
class MemberView:
    node_id: str
    addr: str
    status: MemberStatus
    incarnation: int


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, node: GossipNode) -> None:
        self._node = node

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._node._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._node._drops.warn("udp-error", f"gossip: UDP error: {exc}")


class GossipNode:
    def __init__(
        self,
        options: GossipOptions,
        keyring: Keyring,
        table: EndpointTable | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= options.port <= 65535:
            raise InvalidArgument(f"gossip port must be 0-65535, got {options.port}")
        host = options.advertise_host or options.bind_host
        if host in ("0.0.0.0", ""):
            raise InvalidArgument("gossip needs an advertise address when bound to 0.0.0.0")
        self.options = options
        self.keyring = keyring
        self.table = table if table is not None else EndpointTable()
        self.table.reconcile_grace = options.config.reconcile_grace
        self.on_member: list[Callable[[MemberEvent], None]] = []
        self.port = options.port
        self._rng = rng or random.Random()
        self._core: Swim | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[bool]] = set()
        self._pulling: set[str] = set()
        self._slots = asyncio.Semaphore(options.max_push_pulls)
        self._drops = RateLimitedLog(log)
        self._announcing = False
        self._doctor_acks: dict[int, asyncio.Future[None]] = {}  # seq -> waiter (`ping`)
        self._failed: asyncio.Future[None] | None = None  # the ticker's end (an error)
        self._timer: asyncio.TimerHandle | None = None  # armed for core tick `_due`
        self._due = 0
        self._base = 0  # grid slot of core tick 0
        self.wakeups = 0  # timer firings (each runs the ticks up to a due one)
        self._dense_until = 0  # core tick until which every tick is due (busy, or late)

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def core(self) -> Swim:
        if self._core is None:
            raise RuntimeError("the gossip node is not running")
        return self._core

    @property
    def addr(self) -> str:
        return f"{self.options.advertise_host or self.options.bind_host}:{self.port}"

    async def started(self) -> None:
        await self._started.wait()

    async def run(self) -> None:
        await self._bind()
        self._core = Swim(
            self.options.node_id, self.addr, self._rng, self.options.config, self.table.state
        )
        log.info("gossip: node %s listening on %s", self.options.node_id, self.addr)
        self.table.state.listeners.append(self._local_change)
        self.table.before_change = self._catch_up
        try:
            async with asyncio.TaskGroup() as tg:
                ticker = tg.create_task(self._ticker())
                self._started.set()
                await self._stop.wait()
                ticker.cancel()
                pending = list(self._tasks)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            with contextlib.suppress(ValueError):
                self.table.state.listeners.remove(self._local_change)
            if self.table.before_change == self._catch_up:
                self.table.before_change = None
            self._close()

    async def stop(self, leave: bool = True) -> None:
        """Stop; with `leave`, first tell the others (they drop this node's entries now)."""
        if leave and self._core is not None and self._started.is_set():
            self._catch_up().leave()
            self._flush()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.options.leave_timeout
            while self._core.pending_broadcasts() and loop.time() < deadline:
                await asyncio.sleep(self.options.tick)
        self._stop.set()

    async def join(self, addrs: list[str]) -> int:
        """Exchange state with each of `addrs` ("host:port"); how many answered."""
        results = await asyncio.gather(
            *(self._push_pull(a, join=True) for a in addrs if a != self.addr)
        )
        return sum(results)

    def reconcile(self, authoritative: set[tuple[str, str]]) -> int:
        removed = self._catch_up().reconcile(authoritative)
        if removed:
            log.info("gossip: reconcile removed %d endpoint(s) the managers do not know", removed)
        self._flush()
        return removed

    def members(self) -> list[MemberView]:
        core = self.core
        me = MemberView(core.node_id, core.addr, MemberStatus.ALIVE, core.incarnation)
        return [me] + [
            MemberView(m.node_id, m.addr, m.status, m.incarnation) for m in core.members.all()
        ]

    # -- doctor probes (shoal/doctor) ---------------------------------------------------
    async def ping(self, node_id: str, addr: str, timeout: float) -> bool:
        """One UDP ping to `node_id` at `addr` from this node's own gossip socket, so the ack
        comes back to this node's gossip port: a block of it on either side is seen."""
        if self._udp is None or self._core is None:
            return False
        seq = _DOCTOR_SEQ + self._rng.randrange(2**40)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._doctor_acks[seq] = waiter
        try:
            packet = Packet(self._core.node_id, self.addr, [Ping(seq, node_id)])
            self._send(SendPacket(addr, packet))
            async with asyncio.timeout(timeout):
                await waiter
            return True
        except TimeoutError:
            return False
        finally:
            self._doctor_acks.pop(seq, None)

    async def exchange(self, addr: str) -> bool:
        """One push-pull with `addr` over 7946/tcp (what gossip does periodically anyway)."""
        return await self._push_pull(addr, join=False)

    def _doctor_ack(self, packet: Packet) -> None:
        for msg in packet.messages:
            if isinstance(msg, Ack) and msg.seq in self._doctor_acks:
                waiter = self._doctor_acks[msg.seq]
                if not waiter.done():
                    waiter.set_result(None)

    # -- sockets ------------------------------------------------------------------------
    async def _bind(self) -> None:
        host = self.options.bind_host
        try:
            await self._bind_once(host)
        except OSError as exc:
            raise Conflict(
                f"gossip cannot listen on {host}:{self.options.port}: {exc.strerror or exc}"
            ) from exc

    async def _bind_once(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(host, self.options.port)
            )
            port = int(udp.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(self._serve, host, port)
            except OSError:
                udp.close()
                if self.options.port or attempt == 19:
                    raise
                continue  # an ephemeral UDP port whose TCP twin is taken: try another
            self._udp, self.port = udp, port
            return

    def _close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()

    async def _ticker(self) -> None:
        """Tick the core from a timer callback on the daemon's timer grid (`shoal.wakeups`:
        the Raft ticks fire at the same instants), but only at the ticks at which the core
        has something due (`Swim.next_due`: a probe and its deadlines, a relay's nack, a
        suspicion's end, a gossip round while broadcasts wait, a push-pull). The ticks in
        between only move the core's clock: they run in a burst when the timer fires, and
        before any input is handed to the core (`_catch_up`), so the core sees the very
        calls a tick every period gave it. An idle node wakes for its probes (every 5
        ticks) instead of every tick (issue 13). Only an idle node does: one with
        broadcasts to send (the table or the membership changes), a raised local health or
        a tick found more than half a period late (its loop is getting busy) ticks every
        period again for 10 probe periods, exactly as before, so that every late tick
        counts towards its local health (`note_lag`)."""
        loop = asyncio.get_running_loop()
        period = self.options.tick
        self._failed = loop.create_future()
        # core tick k is due at grid instant `_base + k`
        self._base = grid_slot(loop.time(), period)
        self._schedule()
        try:
            await self._failed
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _schedule(self) -> None:
        """(Re)arm the timer for the core's next due tick."""
        core = self._core
        if core is None or self._failed is None or self._failed.done():
            return
        window = _DENSE_WINDOW * self.options.config.probe_interval
        if core.pending_broadcasts() or core.endpoints.has_changes():
            self._dense_until = max(self._dense_until, core.now + window)  # not idle
        due = core.next_due()
        if core.awareness or core.now < self._dense_until:
            # busy, overloaded, or just was: tick every period, as before. Lifeguard's
            # local health counts every tick this driver finds late (`note_lag`); sensing
            # lateness at the due ticks only, a loaded node raised it too rarely (the
            # 300-task burst: 16 false suspicions against none)
            due = core.now + 1
        if self._timer is not None:
            if due == self._due:
                return
            self._timer.cancel()
        self._due = due
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(grid_time(self._base + due, self.options.tick), self._fire)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.options.tick
        core = self.core
        self._timer = None
        self.wakeups += 1
        wakeups.ride(loop.time())  # slow polls asleep in sleep_riding wake with this tick
        due = self._due
        late = loop.time() - grid_time(self._base + due, period)
        try:
            while core.now < due - 1:  # nothing was due in these: they only move time
                core.tick()
            if late > 2 * period:
                # the loop stalled: let time jump instead of ticking in a burst, which would
                # expire probe deadlines before the acks waiting in the socket are read
                self._base = grid_slot(loop.time(), period) - due
            if late > period / 2:  # the loop is getting busy: watch every tick again
                self._dense_until = due + _DENSE_WINDOW * self.options.config.probe_interval
            if late > period:  # overloaded: acks are read late here too (Lifeguard's
                core.note_lag()  # local health, from the driver's own clock)
            core.tick()
            self._flush()  # re-arms the timer
        except BaseException as exc:  # the ticker task fails with it, as a sleeping loop did
            if self._failed is not None and not self._failed.done():
                self._failed.set_exception(exc)

    def _catch_up(self) -> Swim:
        """Run the ticks whose instants have passed and at which nothing was due, before
        the core is handed an input: it reads the input at the right tick (a relay's nack
        deadline, a suspicion's start, an endpoint's age count from it). Never the due tick
        itself: that is the timer's, after the socket has been read."""
        core = self.core
        if self._failed is not None and not self._failed.done():
            period = self.options.tick
            passed = math.floor((asyncio.get_running_loop().time() - PHASE) / period + 1e-6)
            target = min(passed - self._base, self._due - 1)
            while core.now < target:
                core.tick()
        return core

    def _local_change(self) -> None:
        # called inside the table's change (maybe inside the core's own step): act after it
        if not self._announcing and not self._stop.is_set():
            self._announcing = True
            asyncio.get_running_loop().call_soon(self._announce)

    def _announce(self) -> None:
        self._announcing = False
        if self._core is not None and not self._stop.is_set():
            self._catch_up().announce()
            self._flush()

    def _flush(self) -> None:
        core = self.core
        for event in core.take_events():
            log.info(
                "gossip %s: member %s (%s) is %s at incarnation %d: %s",
                core.node_id, event.node_id, event.addr, event.status.value,
                event.incarnation, event.reason,
            )
            for callback in list(self.on_member):
                callback(event)
        for out in core.take_outputs():
            if isinstance(out, SendPacket):
                self._send(out)
            elif out.addr not in self._pulling and len(self._tasks) < 64:
                task = asyncio.get_running_loop().create_task(self._push_pull(out.addr, out.join))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._schedule()  # what the core just did may have moved its next due tick

    def _send(self, out: SendPacket) -> None:
        if self._udp is None or self._udp.is_closing():
            return
        data = self.keyring.seal(encode_packet(out.packet), _UDP)
        try:
            self._udp.sendto(data, _split(out.addr))
        except (OSError, ValueError) as exc:
            self._drops.warn("send", f"gossip: cannot send to {out.addr}: {exc}")

    def _on_datagram(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if self._core is None:
            return
        try:
            max_size = self.options.config.max_packet + OVERHEAD
            if len(data) > max_size:
                raise GossipPacketError(f"{len(data)}-byte packet exceeds {max_size}")
            packet = decode_packet(self.keyring.open(data, _UDP))
        except GossipPacketError as exc:
            self._drops.warn("packet", f"gossip: dropped a packet from {addr[0]}: {exc.message}")
            return
        if self._doctor_acks:
            self._doctor_ack(packet)
        self._catch_up().step(packet)
        self._flush()

    # -- push-pull over TCP -------------------------------------------------------------
    async def _push_pull(self, addr: str, join: bool) -> bool:
        self._pulling.add(addr)
        try:
            async with self._slots, asyncio.timeout(self.options.stream_timeout):
                host, port = _split(addr)
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    state = self.core.push_pull_state(join)
                    await _write_frame(writer, self.keyring.seal(encode_push_pull(state), _TCP))
                    frame = await _read_frame(reader)
                    reply = decode_push_pull(self.keyring.open(frame, _TCP))
                finally:
                    writer.close()
            self._catch_up().merge_push_pull(reply)
            self._flush()
            return True
        except (OSError, TimeoutError, ValueError, GossipPacketError) as exc:
            self._drops.warn("push-pull", f"gossip: push-pull with {addr} failed: {exc!r}")
            return False
        finally:
            self._pulling.discard(addr)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._core is None:  # bound, not yet running
            writer.close()
            return
        try:
            async with asyncio.timeout(self.options.stream_timeout):
                msg = decode_push_pull(self.keyring.open(await _read_frame(reader), _TCP))
                reply = self._catch_up().handle_push_pull(msg)
                await _write_frame(writer, self.keyring.seal(encode_push_pull(reply), _TCP))
            self._flush()
        except (OSError, TimeoutError, ValueError, GossipPacketError) as exc:
            self._drops.warn("stream", f"gossip: dropped a stream from {peer}: {exc!r}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _write_frame(writer: asyncio.StreamWriter, frame: bytes) -> None:
    writer.write(_LEN.pack(len(frame)) + frame)
    await writer.drain()


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    try:
        (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
        if size > MAX_STREAM + OVERHEAD:
            raise GossipPacketError(f"a {size}-byte frame exceeds the limit")
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise GossipPacketError("the stream ended inside a frame") from exc


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)
