"""The request side of the driver: proposals, conf changes and ReadIndex reads.

Each request is a future the driver settles from its loop (see `pending.py` for when a
proposal succeeds or fails); the call itself only queues an action in the driver's
inbox. A request made while the node is not running fails at once, and `run()` fails
every request still outstanding on its way out, so no caller waits forever.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from shoal import timeouts
from shoal.api.latency import LatencyRecord
from shoal.errors import Unavailable
from shoal.manager.raft.config import RaftNodeConfig
from shoal.manager.raft.errors import NotLeader
from shoal.manager.raft.pending import Proposals, Reads
from shoal.raft import ConfChange, EntryType, ProposalDropped, RawNode, StateRole, decode, encode

__all__ = ["Requests"]


class Requests:
    """Mixed into RaftNode, which provides these attributes."""

    id: int
    config: RaftNodeConfig
    _raw: RawNode
    _running: bool
    _done: asyncio.Event
    _proposals: Proposals
    _reads: Reads
    _read_seq: int
    _requests: set[asyncio.Future[int]]
    proposal_latency: LatencyRecord  # propose -> applied here, successful proposals only

    @property
    def is_leader(self) -> bool:
        return self._running and self._raw.role is StateRole.LEADER

    def _submit(self, action: Callable[[], None]) -> None:
        raise NotImplementedError

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        raise NotImplementedError

    async def propose(self, data: bytes) -> int:
        """Replicate `data`; returns its log index once applied here. Raises `NotLeader`
        when this node is not the leader or loses leadership first (then the entry may or
        may not be committed)."""
        if not self.is_leader:
            raise NotLeader(f"raft {self.id:x}: not the leader", self._raw.lead)
        start = asyncio.get_running_loop().time()
        fut = self._new_request()
        self._submit(functools.partial(self._do_propose, data, EntryType.NORMAL, fut))
        index = await fut
        self.proposal_latency.observe(asyncio.get_running_loop().time() - start)
        return index

    async def read_index(self, timeout: float | None = None) -> int:
        """A linearizable read point: returns once this node applied an index at least as
        recent as every write acknowledged before the call (ReadIndex, §6.4). Retries
        across leader changes; `Unavailable` after `timeout` (no leader or no quorum)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.config.timeout)
        while True:
            self._read_seq += 1
            ctx = b"%d:%d" % (self.id, self._read_seq)
            fut = self._new_request()
            self._reads.add(ctx, fut)
            self._submit(functools.partial(self._do_read, ctx, fut))
            try:
                return await timeouts.wait_for(fut, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise Unavailable(f"raft {self.id:x}: read index timed out") from None
            except NotLeader:
                if loop.time() >= deadline or self._done.is_set():
                    raise
                await self.wait_until(lambda: self._raw.lead != 0, deadline - loop.time())
            finally:
                self._reads.discard(ctx)

    async def _propose_conf_change(self, cc: ConfChange) -> int:
        if not self.is_leader:
            raise NotLeader(f"raft {self.id:x}: not the leader", self._raw.lead)
        fut = self._new_request()
        self._submit(functools.partial(self._do_propose, encode(cc), EntryType.CONF_CHANGE, fut))
        return await fut

    def _new_request(self) -> asyncio.Future[int]:
        """A future the driver settles; failed by `run()` on its way out at the latest."""
        if not self._running:
            raise NotLeader(f"raft {self.id:x}: node is not running")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._requests.add(fut)
        fut.add_done_callback(self._requests.discard)
        return fut

    def _do_propose(self, data: bytes, kind: EntryType, fut: asyncio.Future[int]) -> None:
        if fut.done():
            return
        if self._raw.role is not StateRole.LEADER:
            fut.set_exception(NotLeader(f"raft {self.id:x}: not the leader", self._raw.lead))
            return
        try:
            if kind is EntryType.CONF_CHANGE:
                self._raw.propose_conf_change(decode(data, ConfChange))
            else:
                self._raw.propose(data)
        except ProposalDropped as exc:
            fut.set_exception(exc)
            return
        self._proposals.add(self._raw.last_index, self._raw.term, fut)

    def _do_read(self, ctx: bytes, fut: asyncio.Future[int]) -> None:
        if fut.done():
            return
        try:
            self._raw.read_index(ctx)
        except ProposalDropped as exc:
            self._reads.fail(ctx, NotLeader(str(exc), self._raw.lead))
