"""PURE planner of the kernel mesh that follows the change: given the services that changed
since the last plan, it replans only the ports they hold or held, and writes the `nft -f -`
transaction of those ports alone.

`DeltaPlanner` keeps, between calls, each service's port specs and endpoints, which
services claim each (protocol, published) port, and the port plans, svc chains and
problems of the last plan. `full(state)` replans everything (a start, or after a failure);
`delta(state, services)` replans the ports that the named services claim now or claimed
before (an owner change can hand a port to another service) and gives the transaction from
the previous plan to the new one and the conntrack flushes of the ports whose plan changed.
The results are exactly the full planner's (`plan.py`): `plan()` equals `plan.plan(state)`,
the transaction equals `plan.transaction(previous ruleset, new ruleset)` and the flushes
`plan.conntrack_flushes(previous ports, new ports)` (a hypothesis test checks all three
over random sequences of states). A node id or subnet change, or a table that appears or
goes, is planned whole. No I/O, no clock, no randomness.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from shoal.mesh.errors import MeshError
from shoal.mesh.model import Endpoint, MeshState, PortSpec, service_groups
from shoal.mesh.plan import (
    _SPECS,
    PORTS_MAP,
    REFUSE_CHAIN,
    REFUSED_SET,
    Chain,
    Elements,
    Plan,
    PortPlan,
    Ruleset,
    _add_chain,
    _add_elements,
    _add_rules,
    _backends,
    _del_elements,
    _hook_chains,
    _svc_chain,
    _valid_port,
    conntrack_flushes,
    transaction,
)
from shoal.mesh.traffic import COUNTER_SPEC, counter_elements, counter_sets

__all__ = ["DeltaPlanner", "DeltaResult"]

_Key = tuple[str, int]  # (protocol, published)
# where a problem sorts in the full planner's output: the spec's place in its sorted port
# list (protocol, published, service, target, rank among the service's equal specs), then
# the problem's rank among that spec's problems
_ProblemAt = tuple[str, int, str, int, int, int]


@dataclass(frozen=True)
class DeltaResult:
    script: str  # the transaction from the previous plan to this one ("" if none needed)
    flushes: tuple[tuple[str, ...], ...]  # conntrack(8) deletions after it
    problems: tuple[str, ...]  # the whole plan's problems, as `Plan.problems`
    full: bool  # planned whole (node, subnet or table appeared/went), not by the change


class DeltaPlanner:
    """See the module docstring. Not thread-safe; one caller at a time."""

    def __init__(self, table: str = "shoal") -> None:
        self.table = table
        self._reset()

    def _reset(self) -> None:
        self._node = ""
        self._raw = ""  # the state's subnet as given
        self._subnet = ""  # normalised; "" before the first plan
        self._specs: dict[str, tuple[PortSpec, ...]] = {}
        self._eps: dict[str, tuple[Endpoint, ...]] = {}
        self._claims: dict[_Key, set[str]] = {}
        self._ports: dict[_Key, PortPlan] = {}
        self._chains: dict[_Key, Chain] = {}
        self._problems: dict[_Key, tuple[tuple[_ProblemAt, str], ...]] = {}
        self.replanned = 0  # ports resolved by the last call (for tests and benches)

    # ------------------------------------------------------------------------------ public

    def full(self, state: MeshState) -> Plan:
        """Forget everything and plan `state` whole. Raises MeshError on a bad subnet."""
        subnet = _subnet(state)
        self._reset()
        self._node, self._raw, self._subnet = state.node_id, state.local_subnet, subnet
        groups = service_groups(state)
        for sid, (specs, eps) in groups.items():
            self._take(sid, specs, eps)
        keys = list(self._claims)
        self.replanned = len(keys)
        for key in keys:
            self._resolve(key)
        return self.plan()

    def delta(self, state: MeshState, services: Collection[str]) -> DeltaResult:
        """Plan `state`, whose services other than `services` are as in the previous plan."""
        if not self._subnet or state.node_id != self._node or state.local_subnet != self._raw:
            return self._whole(state)
        had_ports = bool(self._ports)
        changed = set(services)
        specs: dict[str, list[PortSpec]] = {sid: [] for sid in changed}
        eps: dict[str, list[Endpoint]] = {sid: [] for sid in changed}
        for p in state.ports:
            if p.service_id in changed:
                specs[p.service_id].append(p)
        for e in state.endpoints:
            if e.service_id in changed:
                eps[e.service_id].append(e)
        touched: set[_Key] = set()
        for sid in changed:
            touched.update((p.protocol, p.published) for p in self._specs.get(sid, ()))
            self._drop(sid)
            new_specs = tuple(specs[sid])
            self._take(sid, new_specs, tuple(eps[sid]))
            touched.update((p.protocol, p.published) for p in new_specs)
        old_ports: dict[_Key, PortPlan | None] = {k: self._ports.get(k) for k in touched}
        old_chains: dict[_Key, Chain | None] = {k: self._chains.get(k) for k in touched}
        self.replanned = len(touched)
        for key in touched:
            self._resolve(key)
        moved = sorted(k for k in touched if self._ports.get(k) != old_ports[k])
        old_list = [o for k in moved if (o := old_ports[k]) is not None]
        new_list = [self._ports[k] for k in moved if k in self._ports]
        flushes = conntrack_flushes(old_list, new_list)
        if not had_ports:  # the table appears (or stays away)
            return DeltaResult(transaction(None, self.ruleset(), self.table), flushes,
                               self.problems(), True)
        if not self._ports:  # the table goes
            return DeltaResult(f"delete table inet {self.table}\n", flushes, self.problems(),
                               True)
        script = self._script(moved, old_ports, old_chains)
        return DeltaResult(script, flushes, self.problems(), False)

    @property
    def has_ports(self) -> bool:
        """Whether the last plan opens any port (then the table exists)."""
        return bool(self._ports)

    def plan(self) -> Plan:
        """The last plan whole, as `plan.plan` gives it (O(table): for full applies, tests)."""
        return Plan(self.ports(), self.ruleset(), self.problems())

    def ports(self) -> tuple[PortPlan, ...]:
        return tuple(self._ports[k] for k in sorted(self._ports))

    def problems(self) -> tuple[str, ...]:
        found = [item for items in self._problems.values() for item in items]
        return tuple(text for _, text in sorted(found))

    def ruleset(self) -> Ruleset | None:
        return self._materialize(self._ports, self._chains)

    # ---------------------------------------------------------------------------- planning

    def _whole(self, state: MeshState) -> DeltaResult:
        prev_rs, prev_ports = (self.ruleset(), self.ports()) if self._subnet else (None, ())
        result = self.full(state)
        script = transaction(prev_rs, result.ruleset, self.table)
        return DeltaResult(script, conntrack_flushes(prev_ports, result.ports),
                           result.problems, True)

    def _take(self, sid: str, specs: tuple[PortSpec, ...], eps: tuple[Endpoint, ...]) -> None:
        if specs:
            self._specs[sid] = specs
            for p in specs:
                self._claims.setdefault((p.protocol, p.published), set()).add(sid)
        if eps:
            self._eps[sid] = eps

    def _drop(self, sid: str) -> None:
        for p in self._specs.pop(sid, ()):
            key = (p.protocol, p.published)
            claims = self._claims.get(key)
            if claims is not None:
                claims.discard(sid)
                if not claims:
                    del self._claims[key]
        self._eps.pop(sid, None)

    def _resolve(self, key: _Key) -> None:
        """Plan port `key` from the specs that claim it, as `plan.plan_ports` does."""
        self._ports.pop(key, None)
        self._chains.pop(key, None)
        self._problems.pop(key, None)
        candidates: list[tuple[str, int, int, PortSpec]] = []
        for sid in self._claims.get(key, ()):
            rank = 0
            for p in self._specs[sid]:
                if (p.protocol, p.published) == key:
                    candidates.append((sid, p.target, rank, p))
                    rank += 1
        candidates.sort(key=lambda c: (c[0], c[1], c[2]))
        problems: list[tuple[_ProblemAt, str]] = []
        owner = ""
        for sid, target, rank, port in candidates:
            at = (key[0], key[1], sid, target, rank)
            if port.protocol not in ("tcp", "udp") or not _valid_port(port):
                problems.append(((*at, 0), f"service {port.service_id}: invalid port {port}"))
                continue
            if owner:
                problems.append(((*at, 0), (
                    f"service {port.service_id}: {port.protocol}/{port.published} is already "
                    f"published by service {owner}; skipped"
                )))
                continue
            owner = sid
            mine: list[str] = []
            backends = _backends(port, self._eps.get(sid, ()), self._node, mine)
            problems.extend(((*at, i), text) for i, text in enumerate(mine))
            if port.mode == "host" and not backends:
                continue
            planned = PortPlan(port.protocol, port.published, port.target, port.service_id,
                               port.mode, backends, port.policy)
            self._ports[key] = planned
            if backends:
                self._chains[key] = _svc_chain(planned)
        if problems:
            self._problems[key] = tuple(problems)

    # --------------------------------------------------------------------------- rendering

    def _materialize(
        self, ports: dict[_Key, PortPlan], chains: dict[_Key, Chain]
    ) -> Ruleset | None:
        """The `Ruleset` that `plan._ruleset` renders for these port plans and svc chains."""
        if not ports:
            return None
        planned = sorted(ports)
        all_chains = [
            *_hook_chains(self._subnet),
            Chain(REFUSE_CHAIN, "", ("meta l4proto tcp reject with tcp reset", "reject")),
            *(chains[k] for k in planned if ports[k].backends),
        ]
        open_ports = tuple(sorted((ports[k].element, f"goto {ports[k].chain}")
                                  for k in planned if ports[k].backends))
        refused = tuple(sorted((ports[k].element, "") for k in planned if not ports[k].backends))
        kind_map, spec_map = _SPECS[PORTS_MAP]
        kind_set, spec_set = _SPECS[REFUSED_SET]
        sets = (
            *(Elements(n, "set", COUNTER_SPEC, counter_elements(n, planned))
              for n in counter_sets()),
            Elements(PORTS_MAP, kind_map, spec_map, open_ports),
            Elements(REFUSED_SET, kind_set, spec_set, refused),
        )
        return Ruleset(self.table, tuple(sorted(all_chains, key=lambda c: c.name)), sets)

    def _script(
        self,
        moved: Sequence[_Key],
        old_ports: dict[_Key, PortPlan | None],
        old_chains: dict[_Key, Chain | None],
    ) -> str:
        """`plan._diff` of the previous ruleset against the new one, restricted to the ports
        in `moved` (the others are the same in both): the same lines in the same order."""
        t = self.table
        added: list[Chain] = []
        flushed: list[Chain] = []
        removed: list[str] = []
        for key in moved:
            old, new = old_chains[key], self._chains.get(key)
            if old is None and new is not None:
                added.append(new)
            elif old is not None and new is None:
                removed.append(old.name)
            elif old is not None and new is not None and old != new:
                flushed.append(new)
        lines: list[str] = []
        for chain in sorted(added, key=lambda c: c.name):
            lines += _add_chain(t, chain)
        for chain in sorted(flushed, key=lambda c: c.name):
            lines.append(f"flush chain inet {t} {chain.name}")
            lines += _add_rules(t, chain)
        for s in self._set_shapes():
            gone: list[str] = []
            came: list[tuple[str, str]] = []
            for key in moved:
                before, after = _element(s.name, old_ports[key]), _element(
                    s.name, self._ports.get(key))
                if before is not None and (after is None or after[1] != before[1]):
                    gone.append(before[0])
                if after is not None and (before is None or before[1] != after[1]):
                    came.append(after)
            lines += _del_elements(t, s, sorted(gone))
            lines += _add_elements(t, s, sorted(came))
        for name in sorted(removed):
            lines += [f"flush chain inet {t} {name}", f"delete chain inet {t} {name}"]
        return "".join(line + "\n" for line in lines)

    @staticmethod
    def _set_shapes() -> list[Elements]:
        kind_map, spec_map = _SPECS[PORTS_MAP]
        kind_set, spec_set = _SPECS[REFUSED_SET]
        return [
            *(Elements(n, "set", COUNTER_SPEC, ()) for n in counter_sets()),
            Elements(PORTS_MAP, kind_map, spec_map, ()),
            Elements(REFUSED_SET, kind_set, spec_set, ()),
        ]


def _element(set_name: str, port: PortPlan | None) -> tuple[str, str] | None:
    """The element port `port` puts in set `set_name` (None: none)."""
    if port is None:
        return None
    if set_name == PORTS_MAP:
        return (port.element, f"goto {port.chain}") if port.backends else None
    if set_name == REFUSED_SET:
        return None if port.backends else (port.element, "")
    proto = set_name.rpartition("-")[2]
    return (str(port.published), "") if port.protocol == proto else None


def _subnet(state: MeshState) -> str:
    try:
        return str(ipaddress.IPv4Network(state.local_subnet))
    except ValueError as exc:
        raise MeshError(f"mesh: local subnet {state.local_subnet!r} is invalid: {exc}") from exc
