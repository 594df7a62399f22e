"""The endpoint table's replicated state, as a pure value: no I/O, no clock, no asyncio.

Invariants:

* Every record belongs to an *owner*, the node that runs the task (`entry.node_id`), and is
  keyed by `(owner, task_id)`. Only the owner issues versions of its records: a counter per
  owner that it increments on every change (Lamport-style: when the owner hears of a higher
  version of its own, e.g. one it published before a restart, it jumps past it).
* Merging keeps the highest version per `(owner, key)`; an equal version changes nothing,
  so merging is commutative, associative and idempotent and every node converges.
* A deletion is a tombstone (a record without entry) that wins over older versions and is
  forgotten `tombstone_ttl` ticks later, by when anti-entropy has spread it.
* `remove_owner` (the owner was declared dead) drops all of its records in one change.
* `reconcile` removes any live entry the managers do not know (older than `grace` ticks,
  so an entry that raced the managers' snapshot survives): the owner's own ones by a
  gossiped tombstone, other owners' ones by a local tombstone at the same version, which a
  re-gossip of that version cannot undo.

Time is the tick count the gossip core sets in `now`. Readers see `entries()` (live only)
and `generation`, bumped on every visible change; listeners are called after each one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from shoal.gossip.messages import EntryBody, NetBody, PortBody, Record

__all__ = ["EndpointEntry", "EndpointState", "NetworkAddress", "PublishedPort"]


@dataclass(frozen=True)
class PublishedPort:
    """A published port of the entry's service, so a node without the store can open it."""

    protocol: Literal["tcp", "udp"]
    published: int
    target: int
    mode: Literal["ingress", "host"] = "ingress"


@dataclass(frozen=True)
class NetworkAddress:
    """The task on an overlay network: address and service VIP without prefix ("" VIP in
    dnsrr mode), and the service's aliases there."""

    network_id: str
    address: str
    vip: str = ""
    aliases: tuple[str, ...] = ()
    prefix: int = 0  # the network's prefix length and gateway (0 / "": unknown)
    gateway: str = ""
    name: str = ""  # the network's name
    internal: bool = False


@dataclass(frozen=True)
class EndpointEntry:
    service_id: str
    task_id: str
    node_id: str
    address: str
    ready: bool
    ports: tuple[PublishedPort, ...] = ()
    service_name: str = ""
    networks: tuple[NetworkAddress, ...] = ()
    # not ready *yet*: published so the node's service networks (interfaces, DNS) serve
    # the task while it boots; never a mesh backend, not even a draining one
    starting: bool = False
    task_name: str = ""  # SERVICE.SLOT.TASKID (DNS), "" for old peers' records
    hostname: str = ""


@dataclass
class _Slot:
    version: int
    entry: EndpointEntry | None  # None: tombstone
    since: int  # tick at which this version arrived
    local_only: bool = False  # a reconcile suppression: never sent to others


@dataclass
class EndpointState:
    tombstone_ttl: int = 3000
    now: int = 0
    # without a gossip core nobody else can hold a record: deletions need no tombstone
    replicated: bool = False
    generation: int = 0
    listeners: list[Callable[[], None]] = field(default_factory=list)
    _slots: dict[tuple[str, str], _Slot] = field(default_factory=dict)
    _counters: dict[str, int] = field(default_factory=dict)  # owners this node publishes
    _changes: list[Record] = field(default_factory=list)
    # owners gossip suspects: their entries read as not ready until refuted or dead
    _suspects: set[str] = field(default_factory=set)

    # -- reading -----------------------------------------------------------------------
    def entries(self) -> list[EndpointEntry]:
        live = [s.entry for s in self._slots.values() if s.entry is not None]
        if self._suspects:
            live = self._demote_suspects(live)
        return sorted(live, key=lambda e: (e.task_id, e.node_id))

    def _demote_suspects(self, live: list[EndpointEntry]) -> list[EndpointEntry]:
        # only where the service keeps a ready task elsewhere: a false suspicion then
        # costs capacity for a moment, never refuses a service whose tasks are all there
        served = {e.service_id for e in live if e.ready and e.node_id not in self._suspects}
        return [
            replace(e, ready=False)
            if e.ready and e.node_id in self._suspects and e.service_id in served
            else e
            for e in live
        ]

    def set_suspect(self, owner: str, suspect: bool) -> None:
        """Mark `owner` suspected (its entries read as not ready where their service has a
        ready task on another node: the mesh stops sending to it at once, while the
        suspicion runs) or cleared (refuted, or gone)."""
        if suspect == (owner in self._suspects):
            return
        if suspect:
            self._suspects.add(owner)
        else:
            self._suspects.discard(owner)
        if any(k[0] == owner and s.entry is not None for k, s in self._slots.items()):
            self._changed()

    def records(self) -> list[Record]:
        """Every record others may hold (tombstones included): a push-pull's payload."""
        return [
            _record(owner, key, slot)
            for (owner, key), slot in sorted(self._slots.items())
            if not slot.local_only
        ]

    def owned_records(self, owner: str) -> list[Record]:
        return [r for r in self.records() if r.owner == owner]

    def version_of(self, owner: str, key: str) -> int | None:
        slot = self._slots.get((owner, key))
        return None if slot is None else slot.version

    # -- the local node's own entries (the agent) ---------------------------------------
    def set_local(self, entry: EndpointEntry) -> None:
        slot = self._slots.get((entry.node_id, entry.task_id))
        if slot is not None and slot.entry == entry and not slot.local_only:
            return
        self._publish(entry.node_id, entry.task_id, entry)

    def remove_local(self, task_id: str) -> None:
        for owner in sorted(self._counters):
            slot = self._slots.get((owner, task_id))
            if slot is not None and slot.entry is not None:
                self._publish(owner, task_id, None)

    def has_changes(self) -> bool:
        """Records published since the last `take_changes` (they are broadcast next)."""
        return bool(self._changes)

    def take_changes(self) -> list[Record]:
        """Records this node published since the last call: what to broadcast."""
        changes, self._changes = self._changes, []
        return changes

    def _publish(self, owner: str, key: str, entry: EndpointEntry | None) -> None:
        version = self._counters.get(owner, 0) + 1
        self._counters[owner] = version
        if entry is None and not self.replicated:
            self._slots.pop((owner, key), None)
        else:
            self._slots[(owner, key)] = _Slot(version, entry, self.now)
        self._changes.append(_record(owner, key, _Slot(version, entry, self.now)))
        self._changed()

    # -- gossip -------------------------------------------------------------------------
    def merge(self, record: Record) -> bool:
        """Apply another node's record; True if it was news (then pass it on)."""
        key = (record.owner, record.key)
        slot = self._slots.get(key)
        if slot is not None and slot.version >= record.version:
            return False
        entry = _entry(record)
        visible = (slot.entry if slot else None) != entry
        self._slots[key] = _Slot(record.version, entry, self.now)
        if visible:
            self._changed()
        return True

    def refute(self, record: Record) -> Record | None:
        """A record of an owner this node publishes for came back from the cluster.

        Jump the owner's counter past it; if it says something this node does not hold
        (a leftover from before a restart), publish the truth at a newer version.
        """
        owner = record.owner
        self._counters[owner] = max(self._counters.get(owner, 0), record.version)
        slot = self._slots.get((owner, record.key))
        if slot is not None and slot.version >= record.version and not slot.local_only:
            return None
        truth = slot.entry if slot is not None else None
        if truth == _entry(record):
            # the cluster agrees with this node, only at a newer version: take that version
            if slot is not None:
                slot.version = record.version
            return None
        self._publish(owner, record.key, truth)
        return self._changes.pop()

    def is_own(self, owner: str) -> bool:
        return owner in self._counters

    def adopt_owner(self, owner: str) -> None:
        """This node publishes `owner`'s records (its own node id), even before any set."""
        self._counters.setdefault(owner, 0)

    def remove_owner(self, owner: str) -> bool:
        """Drop every record of `owner` (declared dead) in one visible change."""
        self._suspects.discard(owner)
        keys = [k for k in self._slots if k[0] == owner]
        visible = any(self._slots[k].entry is not None for k in keys)
        for k in keys:
            del self._slots[k]
        if visible:
            self._changed()
        return visible

    def reconcile(self, authoritative: Iterable[tuple[str, str]], grace: int) -> int:
        """Remove live entries whose (node_id, task_id) the managers do not know.

        Entries younger than `grace` ticks are spared. Returns how many were removed.
        """
        known = set(authoritative)
        stale = [
            (k, s)
            for k, s in sorted(self._slots.items())
            if s.entry is not None and k not in known and self.now - s.since >= grace
        ]
        suppressed = False
        for (owner, key), slot in stale:
            if owner in self._counters:
                self._publish(owner, key, None)
            else:
                self._slots[(owner, key)] = _Slot(slot.version, None, self.now, local_only=True)
                suppressed = True
        if suppressed:
            self._changed()
        return len(stale)

    def advance(self, now: int) -> None:
        """Move time to tick `now`; forget tombstones older than the ttl."""
        self.now = now
        expired = [
            k
            for k, s in self._slots.items()
            if s.entry is None and now - s.since >= self.tombstone_ttl
        ]
        for k in expired:
            del self._slots[k]

    def _changed(self) -> None:
        self.generation += 1
        for listener in list(self.listeners):
            listener()


def _record(owner: str, key: str, slot: _Slot) -> Record:
    e = slot.entry
    if e is None:
        return Record(owner, key, slot.version, None)
    ports = tuple(PortBody(p.protocol, p.published, p.target, p.mode) for p in e.ports)
    nets = tuple(
        NetBody(n.network_id, n.address, n.vip, n.aliases, n.prefix, n.gateway, n.name,
                n.internal)
        for n in e.networks
    )
    body = EntryBody(e.service_id, e.address, e.ready, ports, e.service_name, nets, e.starting,
                     e.task_name, e.hostname)
    return Record(owner, key, slot.version, body)


def _entry(record: Record) -> EndpointEntry | None:
    b = record.body
    if b is None:
        return None
    ports = tuple(PublishedPort(p.protocol, p.published, p.target, p.mode) for p in b.ports)
    nets = tuple(NetworkAddress(
            n.network, n.address, n.vip, n.aliases, n.prefix, n.gateway, n.name, n.internal
        ) for n in b.networks)
    return EndpointEntry(
        b.service_id, record.key, record.owner, b.address, b.ready, ports, b.service_name, nets,
        b.starting, b.task_name, b.hostname,
    )
