"""Store changes as Docker's swarm events, and Docker's event filters: pure.

A swarm event is `{"Type", "Action", "Actor": {"ID", "Attributes"}, "scope": "swarm",
"time", "timeNano"}` as moby's cluster event generator makes them from swarmkit's watch
stream: Type node|service|network|secret|config, Action create|update|remove, Attributes
`name` plus, on update, `<field>.old`/`<field>.new` for what changed (service image,
replicas, updatestate; node role, availability, state). Docker sends no task events;
shoal adds them (Type `task`, attributes name, service, node, state) only when a filter
asks for `type=task`, so a plain `docker events` prints what Docker's would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shoal.api.timefmt import to_epoch
from shoal.errors import InvalidArgument
from shoal.manager.state.store import Event

__all__ = ["EventFilter", "docker_event", "event_time_ns", "parse_event_filters",
           "parse_timestamp"]

SWARM_TYPES = ("node", "service", "network", "secret", "config")
ALL_TYPES = (*SWARM_TYPES, "task")
# filter keys dockerd accepts on /events (daemon/events/filter.go)
_KEYS = ("config", "container", "daemon", "event", "image", "label", "network", "node",
         "plugin", "scope", "secret", "service", "type", "volume")
_ACTIONS = {"create": "create", "update": "update", "delete": "remove"}


def event_time_ns(event: Event) -> int:
    return round(to_epoch(event.at) * 1e9) if event.at else 0


def _name(kind: str, obj: Any) -> str:
    if kind == "node":
        return str(obj.spec.name or obj.description.hostname)
    if kind == "task":
        return str(obj.name or f"{obj.service_name}.{obj.slot or obj.node_id}")
    return str(obj.spec.name)


def _replicas(svc: Any) -> str:
    rep = svc.spec.mode.replicated
    return "" if rep is None else str(rep.replicas)


def _watched(kind: str, obj: Any) -> dict[str, str]:
    """The fields whose change an update event reports (as moby's)."""
    if kind == "service":
        return {"image": obj.spec.task_template.container_spec.image,
                "replicas": _replicas(obj),
                "updatestate": obj.update_status.state if obj.update_status else ""}
    if kind == "node":
        return {"role": obj.spec.role, "availability": obj.spec.availability,
                "state": obj.status.state}
    if kind == "task":
        return {"state": obj.status.state, "desired-state": obj.desired_state}
    return {}


def _attributes(event: Event) -> dict[str, str]:
    attrs = {"name": _name(event.kind, event.obj)}
    if event.kind == "task":
        attrs.update(service=event.obj.service_name, **{"service.id": event.obj.service_id},
                     node=event.obj.node_id)
    if event.kind in ("network", "secret", "config", "service", "node"):
        labels = getattr(event.obj.spec, "labels", None) or {}
        attrs.update({k: v for k, v in labels.items() if k not in attrs})
    if event.action == "update" and event.old is not None:
        new, old = _watched(event.kind, event.obj), _watched(event.kind, event.old)
        for key, value in new.items():
            if old.get(key) != value:
                attrs[f"{key}.old"], attrs[f"{key}.new"] = old.get(key, ""), value
    return attrs


def docker_event(event: Event) -> dict[str, Any] | None:
    """Docker's message for one store event, or None for kinds docker does not report."""
    if event.kind not in ALL_TYPES:
        return None
    ns = event_time_ns(event)
    return {
        "Type": event.kind,
        "Action": _ACTIONS[event.action],
        "Actor": {"ID": event.obj.id, "Attributes": _attributes(event)},
        "scope": "swarm",
        "time": ns // 1_000_000_000,
        "timeNano": ns,
    }


def _fuzzy(wanted: list[str], *values: str) -> bool:
    return any(v and (v == w or v.startswith(w)) for w in wanted for v in values)


@dataclass(frozen=True)
class EventFilter:
    """Docker's /events filters: every key given must match (values of one key: any)."""

    by_key: dict[str, list[str]] = field(default_factory=dict)

    def _types(self) -> tuple[str, ...]:
        return tuple(self.by_key["type"]) if "type" in self.by_key else SWARM_TYPES

    def _named(self, key: str, msg: dict[str, Any]) -> bool:
        wanted = self.by_key.get(key)
        if wanted is None:
            return True
        attrs = msg["Actor"]["Attributes"]
        if msg["Type"] == key:
            return _fuzzy(wanted, msg["Actor"]["ID"], attrs.get("name", ""))
        if msg["Type"] == "task" and key == "service":
            return _fuzzy(wanted, attrs["service.id"], attrs["service"])
        if msg["Type"] == "task" and key == "node":
            return _fuzzy(wanted, attrs["node"])
        return False

    def _labels(self, attrs: dict[str, str]) -> bool:
        for want in self.by_key.get("label", []):
            key, eq, value = want.partition("=")
            if key not in attrs or (eq and attrs[key] != value):
                return False
        return True

    def matches(self, msg: dict[str, Any]) -> bool:
        if msg["Type"] not in self._types():
            return False
        if "event" in self.by_key and msg["Action"] not in self.by_key["event"]:
            return False
        if "scope" in self.by_key and "swarm" not in self.by_key["scope"]:
            return False
        # container, image, volume, plugin, daemon: no swarm event is about one of those
        if any(k in self.by_key for k in ("container", "image", "volume", "plugin", "daemon")):
            return False
        named = ("service", "node", "network", "secret", "config")
        return all(self._named(k, msg) for k in named) and self._labels(
            msg["Actor"]["Attributes"])


def parse_event_filters(by_key: dict[str, list[str]]) -> EventFilter:
    for key in by_key:
        if key not in _KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
    for kind in by_key.get("type", []):
        if kind not in (*ALL_TYPES, "container", "image", "volume", "plugin", "daemon"):
            raise InvalidArgument(f"invalid filter 'type={kind}'")
    for scope in by_key.get("scope", []):
        if scope not in ("local", "swarm"):
            raise InvalidArgument(f"invalid filter 'scope={scope}'")
    return EventFilter(by_key)


def parse_timestamp(name: str, text: str) -> int:
    """`since`/`until` as dockerd reads them: Unix seconds with an optional `.nanoseconds`
    part (what the CLI sends), or RFC 3339. Returns nanoseconds since the epoch."""
    secs, dot, frac = text.partition(".")
    if secs.lstrip("-").isdigit() and (not dot or frac.isdigit()):
        return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
    try:
        return round(to_epoch(text) * 1e9)
    except ValueError:
        raise InvalidArgument(
            f"invalid value for {name}: {text!r} is not a Unix timestamp or RFC 3339 time"
        ) from None
