"""A strict, tiny model of the nftables kernel state, executing the line commands plan.py emits.

Strict where the kernel is (or might be): deleting what does not exist, adding an element
that exists, referring to a chain or set that does not exist, deleting a chain that still
has rules or is referred to. A script runs as one transaction: any error leaves the model
unchanged, like `nft -f -`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from shoal.mesh.plan import Ruleset


class NftError(Exception):
    pass


@dataclass
class Table:
    chains: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    sets: dict[str, tuple[str, str, dict[str, str]]] = field(default_factory=dict)


def expected(rs: Ruleset | None) -> dict[str, Table]:
    """The model state that a rendered ruleset stands for."""
    if rs is None:
        return {}
    table = Table()
    for c in rs.chains:
        table.chains[c.name] = (c.hook, list(c.rules))
    for s in rs.sets:
        table.sets[s.name] = (s.kind, s.spec, dict(s.elements))
    return {rs.table: table}


_BRACED = re.compile(r"^\{ (.*) \}$")


def _braced(text: str) -> str:
    m = _BRACED.match(text.strip())
    if not m:
        raise NftError(f"expected {{ ... }}: {text!r}")
    return m.group(1)


class NftModel:
    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}

    def run(self, script: str) -> None:
        saved = copy.deepcopy(self.tables)
        try:
            for line in script.splitlines():
                if line.strip():
                    self._exec(line)
        except NftError:
            self.tables = saved
            raise

    def _table(self, name: str) -> Table:
        if name not in self.tables:
            raise NftError(f"no table {name}")
        return self.tables[name]

    def _exec(self, line: str) -> None:
        words = line.split(" ")
        verb, obj = words[0], words[1]
        if words[2] != "inet":
            raise NftError(f"family must be inet: {line}")
        tname = words[3]
        rest = " ".join(words[4:])
        handler = getattr(self, f"_{verb}_{obj}", None)
        if handler is None:
            raise NftError(f"unknown command: {line}")
        handler(tname, rest)

    # tables
    def _add_table(self, tname: str, rest: str) -> None:
        self.tables.setdefault(tname, Table())

    def _delete_table(self, tname: str, rest: str) -> None:
        self._table(tname)
        del self.tables[tname]

    # chains
    def _add_chain(self, tname: str, rest: str) -> None:
        t = self._table(tname)
        name, _, hook = rest.partition(" ")
        hook = _braced(hook) if hook else ""
        if name in t.chains:
            if t.chains[name][0] != hook:
                raise NftError(f"chain {name} exists with another hook")
            return
        t.chains[name] = (hook, [])

    def _flush_chain(self, tname: str, rest: str) -> None:
        t = self._table(tname)
        if rest not in t.chains:
            raise NftError(f"no chain {rest}")
        t.chains[rest][1].clear()

    def _delete_chain(self, tname: str, rest: str) -> None:
        t = self._table(tname)
        if rest not in t.chains:
            raise NftError(f"no chain {rest}")
        if t.chains[rest][1]:
            raise NftError(f"chain {rest} is not empty")
        for _, rules in t.chains.values():
            if any(re.search(rf"\b(goto|jump) {re.escape(rest)}(\s|$)", r) for r in rules):
                raise NftError(f"chain {rest} is in use by a rule")
        for _, _, elements in t.sets.values():
            if f"goto {rest}" in elements.values():
                raise NftError(f"chain {rest} is in use by a map")
        del t.chains[rest]

    def _add_rule(self, tname: str, rest: str) -> None:
        t = self._table(tname)
        name, _, rule = rest.partition(" ")
        if name not in t.chains:
            raise NftError(f"no chain {name}")
        for ref in re.findall(r"@([\w-]+)", rule):
            if ref not in t.sets:
                raise NftError(f"no set {ref}")
        for ref in re.findall(r"\b(?:goto|jump) ([\w-]+)", rule):
            if ref not in t.chains:
                raise NftError(f"no chain {ref}")
        t.chains[name][1].append(rule)

    # sets and maps
    def _add_set(self, tname: str, rest: str, kind: str = "set") -> None:
        t = self._table(tname)
        name, _, spec = rest.partition(" ")
        spec = _braced(spec)
        if name in t.sets:
            if t.sets[name][:2] != (kind, spec):
                raise NftError(f"{name} exists with another type")
            return
        t.sets[name] = (kind, spec, {})

    def _add_map(self, tname: str, rest: str) -> None:
        self._add_set(tname, rest, "map")

    def _add_element(self, tname: str, rest: str) -> None:
        t = self._table(tname)
        name, _, items = rest.partition(" ")
        if name not in t.sets:
            raise NftError(f"no set {name}")
        kind, _, elements = t.sets[name]
        for item in _braced(items).split(", "):
            key, _, value = item.partition(" : ") if kind == "map" else (item, "", "")
            if kind == "map" and not value:
                raise NftError(f"map element without value: {item}")
            if key in elements:
                raise NftError(f"element {key} exists in {name}")
            target = value.removeprefix("goto ")
            if value and target not in t.chains:
                raise NftError(f"no chain {target}")
            elements[key] = value

    def _delete_element(self, tname: str, rest: str) -> None:
        t = self._table(tname)
        name, _, keys = rest.partition(" ")
        if name not in t.sets:
            raise NftError(f"no set {name}")
        elements = t.sets[name][2]
        for key in _braced(keys).split(", "):
            if key not in elements:
                raise NftError(f"no element {key} in {name}")
            del elements[key]
