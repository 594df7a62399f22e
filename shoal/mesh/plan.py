"""PURE planner of the kernel mesh: `MeshState` -> nftables content -> `nft -f -` transactions.

No I/O, no clock, no randomness: the same inputs always give the same text (everything is
sorted), so plans can be compared, diffed and tested as values.

Layout of `table inet <table>` (one per node; see docs/design/mesh.md):

    map ports      { proto . port : goto svc-<proto>-<port> }     open ports with backends
    set refused    { proto . port }                               ingress ports with none
    chain svc-<proto>-<port>   mark for masquerade, DNAT round robin (numgen inc) to backends
    chain refuse               TCP reset / ICMP port unreachable
    chain nat-prerouting       (hook) local daddr . proto . port -> vmap @ports
    chain nat-output           (hook) the same for the node's own clients (incl. 127.0.0.1)
    chain nat-postrouting      (hook) marked flows: masquerade (port-preserving) unless
                               the client is external and the backend is on this node
    chain filter-input         (hook) new flows to @refused -> refuse; counters (replies)
    chain filter-forward       (hook) counters of the flows the mesh DNAT'd (traffic.py)
    chain filter-output        (hook) counters of this node's own clients' flows
    chain mangle-forward       (hook) forwarded SYNs: TCP MSS clamped to the route MTU
    set traffic-*, flows-*     { port } with a counter each: bytes and connections per port

Invariants of the transactions built here: a chain exists before a map element or rule
refers to it; map elements go before the chains they pointed at are deleted; a node with no
open port has no table at all (so "removing a service leaves no rule behind" holds down to
the table). The kernel applies one `nft -f -` script atomically.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from shoal.mesh.errors import MeshError
from shoal.mesh.model import Endpoint, MeshState, PortSpec
from shoal.mesh.traffic import COUNTER_SPEC, counter_elements, counter_sets, counting_rules

if TYPE_CHECKING:
    from shoal.mesh.plan_cache import PlanCache

__all__ = [
    "MASQ_MARK",
    "Chain",
    "Elements",
    "Plan",
    "PortPlan",
    "Ruleset",
    "conntrack_flushes",
    "local_only",
    "plan",
    "plan_ports",
    "render",
    "serving_endpoints",
    "transaction",
]

# One packet-mark bit says "DNAT'd by the mesh"; postrouting decides on masquerade from it.
MASQ_MARK = 0x00400000
PORTS_MAP = "ports"
REFUSED_SET = "refused"
REFUSE_CHAIN = "refuse"
LOOPBACK = "127.0.0.0/8"
TABLE_COMMENT = "shoal routing mesh"

_HOOKS: dict[str, str] = {
    "nat-prerouting": "type nat hook prerouting priority -100; policy accept;",
    "nat-output": "type nat hook output priority -100; policy accept;",
    "nat-postrouting": "type nat hook postrouting priority 100; policy accept;",
    "filter-input": "type filter hook input priority 0; policy accept;",
    "filter-forward": "type filter hook forward priority 0; policy accept;",
    "filter-output": "type filter hook output priority 0; policy accept;",
    "mangle-forward": "type filter hook forward priority -150; policy accept;",
}
_SPECS: dict[str, tuple[Literal["map", "set"], str]] = {
    PORTS_MAP: ("map", "type inet_proto . inet_service : verdict;"),
    REFUSED_SET: ("set", "type inet_proto . inet_service;"),
}


@dataclass(frozen=True)
class PortPlan:
    """One port this node opens: where its traffic goes (`backends` empty: refused)."""

    protocol: str
    published: int
    target: int
    service_id: str
    mode: str
    backends: tuple[str, ...]
    policy: str = "cluster"

    @property
    def key(self) -> tuple[str, int]:
        return (self.protocol, self.published)

    @property
    def chain(self) -> str:
        return f"svc-{self.protocol}-{self.published}"

    @property
    def element(self) -> str:
        return f"{self.protocol} . {self.published}"


@dataclass(frozen=True)
class Chain:
    name: str
    hook: str  # "" for a regular chain, else "type ... hook ... priority ...; policy ...;"
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Elements:
    """A named map or set; `elements` are sorted (key, value) pairs, value "" in a set."""

    name: str
    kind: Literal["map", "set"]
    spec: str
    elements: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Ruleset:
    """The whole content of the table; chains and sets sorted by name."""

    table: str
    chains: tuple[Chain, ...]
    sets: tuple[Elements, ...]

    def chain_map(self) -> dict[str, Chain]:
        return {c.name: c for c in self.chains}

    def set_map(self) -> dict[str, Elements]:
        return {s.name: s for s in self.sets}


@dataclass(frozen=True)
class Plan:
    ports: tuple[PortPlan, ...]
    ruleset: Ruleset | None  # None: no port is open here, the table must not exist
    problems: tuple[str, ...]  # inputs that were skipped, and why (for the log)


# ---------------------------------------------------------------------------------- planning


def _valid_port(port: PortSpec) -> bool:
    return 0 < port.published < 65536 and 0 < port.target < 65536


def local_only(port: PortSpec) -> bool:
    """Whether `port` is balanced over this node's tasks only: host-mode publishing, or the
    service's "local" traffic policy (the same backends; but a local ingress port with no
    ready local task is refused, where a host-mode one is not opened)."""
    return port.mode == "host" or port.policy == "local"


def serving_endpoints(
    port: PortSpec, endpoints: Sequence[Endpoint], node_id: str
) -> list[Endpoint]:
    """The endpoints that take `port`'s new connections: its ready ones (this node's only,
    for a local port). With none ready, an ingress port falls back to the terminating ones
    (present but not ready: draining, still serving, until they stop), as kube-proxy does,
    rather than refusing. That covers the moment of a start-first rollout where a node has
    heard that the old tasks drain before it has heard that their replacements are ready
    (both travel by gossip, from different nodes). A host-mode port never falls back."""
    mine = [ep for ep in endpoints if not local_only(port) or ep.node_id == node_id]
    ready = [ep for ep in mine if ep.ready]
    return ready if ready or port.mode == "host" else mine


def _backends(
    port: PortSpec, endpoints: Sequence[Endpoint], node_id: str, problems: list[str]
) -> tuple[str, ...]:
    """The addresses of `port`'s serving endpoints among `endpoints` (its service's)."""
    found: set[ipaddress.IPv4Address] = set()
    for ep in serving_endpoints(port, endpoints, node_id):
        try:
            found.add(ipaddress.IPv4Address(ep.address))
        except ValueError:
            problems.append(f"task {ep.task_id}: endpoint address {ep.address!r} is not IPv4")
    return tuple(str(a) for a in sorted(found))


def plan_ports(
    state: MeshState, cache: PlanCache | None = None
) -> tuple[tuple[PortPlan, ...], tuple[str, ...]]:
    problems: list[str] = []
    taken: dict[tuple[str, int], str] = {}
    out: list[PortPlan] = []
    order = sorted(state.ports, key=lambda p: (p.protocol, p.published, p.service_id, p.target))
    # grouped once: planning costs O(ports + endpoints), not O(ports x endpoints)
    by_service: dict[str, list[Endpoint]] = {}
    for ep in state.endpoints:
        by_service.setdefault(ep.service_id, []).append(ep)
    for port in order:
        key = (port.protocol, port.published)
        if port.protocol not in ("tcp", "udp") or not _valid_port(port):
            problems.append(f"service {port.service_id}: invalid port {port}")
            continue
        if key in taken:
            problems.append(
                f"service {port.service_id}: {port.protocol}/{port.published} is already "
                f"published by service {taken[key]}; skipped"
            )
            continue
        taken[key] = port.service_id
        eps = by_service.get(port.service_id, ())
        if cache is None:
            backends = _backends(port, eps, state.node_id, problems)
        else:
            backends = cache.backends(port, eps, state.node_id, problems, _backends)
        if port.mode == "host" and not backends:
            continue  # host mode opens a port only where one of its tasks is ready
        out.append(
            PortPlan(port.protocol, port.published, port.target, port.service_id, port.mode,
                     backends, port.policy)
        )
    return tuple(out), tuple(problems)


def plan(state: MeshState, table: str = "shoal", cache: PlanCache | None = None) -> Plan:
    """Everything the kernel data plane needs for `state`. Raises MeshError on a bad subnet.

    With a `cache` (`plan_cache.PlanCache`, kept between calls) the result is the same; the
    work of services unchanged since the last call is reused."""
    try:
        subnet = ipaddress.IPv4Network(state.local_subnet)
    except ValueError as exc:
        raise MeshError(f"mesh: local subnet {state.local_subnet!r} is invalid: {exc}") from exc
    if cache is not None:
        cache.begin()
    ports, problems = plan_ports(state, cache)
    ruleset = _ruleset(table, str(subnet), ports, cache) if ports else None
    if cache is not None:
        cache.end()
    return Plan(ports, ruleset, problems)


def render(state: MeshState, table: str = "shoal") -> Ruleset | None:
    return plan(state, table).ruleset


# --------------------------------------------------------------------------------- rendering


def _comment(service_id: str) -> str:
    safe = "".join(ch for ch in service_id if ch.isalnum() or ch in "._-")
    return f'comment "service {safe}"'


def _dnat_rule(port: PortPlan) -> str:
    head = f"meta l4proto {port.protocol} meta mark set meta mark | {MASQ_MARK:#010x}"
    if len(port.backends) == 1:
        to = f"{port.backends[0]}:{port.target}"
    else:
        slots = ", ".join(f"{i} : {addr}" for i, addr in enumerate(port.backends))
        to = f"numgen inc mod {len(port.backends)} map {{ {slots} }} : {port.target}"
    return f"{head} dnat ip to {to} {_comment(port.service_id)}"


def _hook_chains(subnet: str) -> list[Chain]:
    vmap = f"meta nfproto ipv4 fib daddr type local meta l4proto . th dport vmap @{PORTS_MAP}"
    mark = f"{MASQ_MARK:#010x}"
    return [
        Chain("nat-prerouting", _HOOKS["nat-prerouting"], (vmap,)),
        Chain("nat-output", _HOOKS["nat-output"], (vmap,)),
        Chain(
            "nat-postrouting",
            _HOOKS["nat-postrouting"],
            (
                f"meta mark & {mark} == 0 return",
                f"meta mark set meta mark ^ {mark}",
                # port-preserving, not fully-random: see docs/design/mesh.md (PAWS)
                f'ip daddr != {subnet} masquerade comment "task on another node"',
                f"ip saddr {{ {LOOPBACK}, {subnet} }} masquerade"
                ' comment "loopback or hairpin client"',
            ),
        ),
        Chain(
            "filter-input",
            _HOOKS["filter-input"],
            (
                "meta nfproto ipv4 ct state new fib daddr type local"
                f" meta l4proto . th dport @{REFUSED_SET} goto {REFUSE_CHAIN}",
                *counting_rules("input"),
            ),
        ),
        Chain("filter-forward", _HOOKS["filter-forward"], counting_rules("forward")),
        Chain("filter-output", _HOOKS["filter-output"], counting_rules("output")),
        # a client's SYN to a task on another node crosses the overlay (MTU 1450): clamp the
        # MSS to the route's MTU, so it never depends on ICMP "fragmentation needed" coming
        # back through firewalls (tasks and clients are 1500-byte hosts)
        Chain(
            "mangle-forward",
            _HOOKS["mangle-forward"],
            ("tcp flags syn / syn,rst tcp option maxseg size set rt mtu",),
        ),
    ]


def _svc_chain(port: PortPlan) -> Chain:
    return Chain(port.chain, "", (_dnat_rule(port),))


def _ruleset(
    table: str, subnet: str, ports: Sequence[PortPlan], cache: PlanCache | None = None
) -> Ruleset:
    chains = _hook_chains(subnet)
    chains.append(
        Chain(REFUSE_CHAIN, "", ("meta l4proto tcp reject with tcp reset", "reject"))
    )
    if cache is None:
        chains.extend(_svc_chain(p) for p in ports if p.backends)
    else:
        chains.extend(cache.chain(p, _svc_chain) for p in ports if p.backends)
    open_ports = tuple((p.element, f"goto {p.chain}") for p in ports if p.backends)
    refused = tuple((p.element, "") for p in ports if not p.backends)
    kind_map, spec_map = _SPECS[PORTS_MAP]
    kind_set, spec_set = _SPECS[REFUSED_SET]
    planned = [p.key for p in ports]
    sets = (
        *(Elements(n, "set", COUNTER_SPEC, counter_elements(n, planned)) for n in counter_sets()),
        Elements(PORTS_MAP, kind_map, spec_map, tuple(sorted(open_ports))),
        Elements(REFUSED_SET, kind_set, spec_set, tuple(sorted(refused))),
    )
    return Ruleset(table, tuple(sorted(chains, key=lambda c: c.name)), sets)


# ------------------------------------------------------------------------------ transactions


def _elements_text(kind: str, items: Iterable[tuple[str, str]]) -> str:
    parts = [f"{k} : {v}" if kind == "map" else k for k, v in items]
    return ", ".join(parts)


def _add_elements(table: str, s: Elements, items: Sequence[tuple[str, str]]) -> list[str]:
    if not items:
        return []
    return [f"add element inet {table} {s.name} {{ {_elements_text(s.kind, items)} }}"]


def _del_elements(table: str, s: Elements, keys: Sequence[str]) -> list[str]:
    if not keys:
        return []
    return [f"delete element inet {table} {s.name} {{ {', '.join(keys)} }}"]


def _add_chain(table: str, chain: Chain) -> list[str]:
    head = f"add chain inet {table} {chain.name}"
    if chain.hook:
        head += f" {{ {chain.hook} }}"
    return [head, *_add_rules(table, chain)]


def _add_rules(table: str, chain: Chain) -> list[str]:
    return [f"add rule inet {table} {chain.name} {rule}" for rule in chain.rules]


def _create(rs: Ruleset) -> list[str]:
    t = rs.table
    lines = [f'add table inet {t} {{ comment "{TABLE_COMMENT}"; }}']
    lines += [f"add {s.kind} inet {t} {s.name} {{ {s.spec} }}" for s in rs.sets]
    # regular chains first: the hook chains and map elements refer to them
    for chain in (c for c in rs.chains if not c.hook):
        lines += _add_chain(t, chain)
    for s in rs.sets:
        lines += _add_elements(t, s, s.elements)
    for chain in (c for c in rs.chains if c.hook):
        lines += _add_chain(t, chain)
    return lines


def _same_structure(prev: Ruleset, new: Ruleset) -> bool:
    """Sets and hook chains are fixed; if they ever differ, the table is rebuilt whole."""

    def shape(rs: Ruleset) -> tuple[object, ...]:
        sets = tuple((s.name, s.kind, s.spec) for s in rs.sets)
        hooks = tuple((c.name, c.hook) for c in rs.chains if c.hook)
        return (rs.table, sets, hooks)

    return shape(prev) == shape(new)


def _diff(prev: Ruleset, new: Ruleset) -> list[str]:
    t = new.table
    old_chains, new_chains = prev.chain_map(), new.chain_map()
    lines: list[str] = []
    for name in sorted(new_chains.keys() - old_chains.keys()):
        lines += _add_chain(t, new_chains[name])
    for name in sorted(new_chains.keys() & old_chains.keys()):
        if new_chains[name] is not old_chains[name] and new_chains[name] != old_chains[name]:
            lines.append(f"flush chain inet {t} {name}")
            lines += _add_rules(t, new_chains[name])
    old_sets = prev.set_map()
    for s in new.sets:
        before, after = dict(old_sets[s.name].elements), dict(s.elements)
        gone = [k for k, v in sorted(before.items()) if after.get(k) != v]
        added = [(k, v) for k, v in sorted(after.items()) if before.get(k) != v]
        lines += _del_elements(t, s, gone)
        lines += _add_elements(t, s, added)
    for name in sorted(old_chains.keys() - new_chains.keys()):
        lines += [f"flush chain inet {t} {name}", f"delete chain inet {t} {name}"]
    return lines


def transaction(
    prev: Ruleset | None,
    new: Ruleset | None,
    table: str = "shoal",
    *,
    prev_known: bool = True,
) -> str:
    """The `nft -f -` script that moves the kernel from `prev` to `new`, "" if none is needed.

    `prev_known=False` (first apply after a start, or after a failure) replaces whatever the
    table holds: `add table` + `delete table` + create, still one atomic transaction.
    """
    for rs in (prev, new):
        if rs is not None and rs.table != table:
            raise MeshError(f"mesh: ruleset of table {rs.table!r} used with table {table!r}")
    if not prev_known:
        lines = [f"add table inet {table}", f"delete table inet {table}"]
        lines += _create(new) if new is not None else []
    elif new is None:
        lines = [f"delete table inet {table}"] if prev is not None else []
    elif prev is None:
        lines = _create(new)
    elif not _same_structure(prev, new):
        lines = [f"delete table inet {table}", *_create(new)]
    else:
        lines = _diff(prev, new)
    return "".join(line + "\n" for line in lines)


# -------------------------------------------------------------------------------- conntrack


def conntrack_flushes(
    prev: Sequence[PortPlan] | None, new: Sequence[PortPlan]
) -> tuple[tuple[str, ...], ...]:
    """conntrack(8) argument lists to run after a transaction from `prev` to `new` ports.

    UDP has no connection end, so a flow keeps its NAT binding for as long as the client
    keeps sending: (1) flows to a backend that left (or whose target port changed) are
    deleted, so their next datagram is balanced anew; (2) when a UDP port gets backends
    after having none, flows the kernel tracked un-NAT'd meanwhile (e.g. to a local socket)
    are deleted too, like kube-proxy does for node ports. `prev=None` (unknown) flushes none.

    TCP: (3) half-open connections (SYN_SENT) to a backend that left are deleted. A client
    whose connect to a dead backend timed out keeps no TIME_WAIT, so it may soon reuse the
    same source port, and its new SYN would follow the old entry (120 s) to the dead
    backend again. Established connections are left alone: a draining task finishes them.
    """
    if prev is None:
        return ()
    old = {p.key: p for p in prev if p.protocol in ("udp", "tcp")}
    cur = {p.key: p for p in new if p.protocol in ("udp", "tcp")}
    out: list[tuple[str, ...]] = []
    for key, before in sorted(old.items()):
        after = cur.get(key)
        keep = set(after.backends) if after and after.target == before.target else set()
        states = ("--state", "SYN_SENT") if before.protocol == "tcp" else ()
        flow = ("-D", "-p", before.protocol, *states, "--orig-port-dst", str(before.published))
        gone = [addr for addr in before.backends if addr not in keep]
        if gone and not keep and (after is None or not after.backends):
            out.append(flow)  # every backend left: one call for the port, not one each
            continue
        for addr in gone:
            out.append((*flow, "--reply-src", addr, "--reply-port-src", str(before.target)))
    for key, after in sorted(cur.items()):
        if after.protocol != "udp":
            continue
        before_ = old.get(key)
        if after.backends and (before_ is None or not before_.backends):
            out.append(("-D", "-p", "udp", "--orig-port-dst", str(after.published)))
    return tuple(out)
