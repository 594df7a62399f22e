"""ServiceSpec bodies from `service create` / `service update` flags: pure.

Input is the set of flags the user gave (docker's `flags.Changed`), already parsed: a mapping
from docker's flag name (`publish`, `env-add`, `restart-delay`, ...) to its value (port
dicts, lists of strings, nanoseconds, ...). `build_spec` returns the body docker's
`ServiceSpec` would marshal to (same keys, same order, same omitted zero values, swarmkit's
defaults for a partly given restart/update policy). `apply_update` edits a spec as returned
by `GET /services/{id}` in place, like docker's `updateService`, so the whole spec is posted
back with `?version=N`. Keys of that spec are matched case-insensitively, as Go decodes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shoal.errors import InvalidArgument

__all__ = [
    "DEFAULT_RESTART",
    "DEFAULT_UPDATE",
    "apply_update",
    "build_spec",
    "check_update_flags",
    "health_config",
    "make_env",
    "update_ports",
]

Flags = Mapping[str, Any]

DEFAULT_RESTART: dict[str, Any] = {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 0}
DEFAULT_UPDATE: dict[str, Any] = {
    "Parallelism": 1,
    "FailureAction": "pause",
    "Monitor": 5_000_000_000,
    "MaxFailureRatio": 0,
    "Order": "stop-first",
}
_CONFIG_KEYS = {
    "parallelism": "Parallelism",
    "delay": "Delay",
    "failure-action": "FailureAction",
    "monitor": "Monitor",
    "max-failure-ratio": "MaxFailureRatio",
    "order": "Order",
}
_HEALTH_FLAGS = (
    "health-cmd",
    "health-interval",
    "health-timeout",
    "health-start-period",
    "health-retries",
)
_HEALTH_KEYS = {
    "health-interval": "Interval",
    "health-timeout": "Timeout",
    "health-start-period": "StartPeriod",
    "health-retries": "Retries",
}
_RESTART_KEYS = {
    "restart-condition": "Condition",
    "restart-delay": "Delay",
    "restart-max-attempts": "MaxAttempts",
    "restart-window": "Window",
}
_CONTAINER_KEYS = {
    "image": "Image",
    "args": "Args",
    "entrypoint": "Command",
    "workdir": "Dir",
    "user": "User",
    "hostname": "Hostname",
    "init": "Init",
    "tty": "TTY",
    "read-only": "ReadOnly",
    "stop-signal": "StopSignal",
    "stop-grace-period": "StopGracePeriod",
}
_RESOURCE_FLAGS = ("limit-cpu", "limit-memory", "limit-pids", "reserve-cpu", "reserve-memory")


# --- case-insensitive access to specs decoded from JSON -------------------------------------


def _key(obj: Mapping[str, Any], name: str) -> str:
    if name in obj:
        return name
    lower = name.lower()
    return next((k for k in obj if k.lower() == lower), name)


def _get(obj: Mapping[str, Any] | None, name: str) -> Any:
    return None if obj is None else obj.get(_key(obj, name))


def _put(obj: dict[str, Any], name: str, value: Any) -> None:
    obj[_key(obj, name)] = value


def _sub(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """The child object `name`, created (or replacing a null) when missing."""
    key = _key(obj, name)
    if not isinstance(obj.get(key), dict):
        obj[key] = {}
    child: dict[str, Any] = obj[key]
    return child


def _changed(flags: Flags, *names: str) -> bool:
    return any(name in flags for name in names)


# --- pieces shared by create and update -------------------------------------------------------


def make_env(values: list[str]) -> list[str]:
    """docker's makeEnv: one entry per key, the last given wins (and moves to the end)."""
    out: list[str] = []
    for item in values:
        if item in out:
            continue
        key = item.partition("=")[0]
        out = [e for e in out if not e.startswith(key + "=")]
        out.append(item)
    return out


def health_config(flags: Flags) -> dict[str, Any] | None:
    """The Healthcheck of a create; None when no health flag was given."""
    given = (
        bool(flags.get("health-cmd"))
        or bool(flags.get("health-retries"))
        or _changed(flags, "health-interval", "health-timeout", "health-start-period")
    )
    if flags.get("no-healthcheck"):
        if given:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    health: dict[str, Any] = {}
    if flags.get("health-cmd"):
        health["Test"] = ["CMD-SHELL", flags["health-cmd"]]
    for flag, key in _HEALTH_KEYS.items():
        if flags.get(flag):
            health[key] = flags[flag]
    return health


def _service_mode(flags: Flags) -> dict[str, Any]:
    mode = flags.get("mode", "replicated")
    if mode == "global":
        if "replicas" in flags:
            raise InvalidArgument(
                "replicas can only be used with replicated or replicated-job mode"
            )
        if flags.get("replicas-max-per-node"):
            raise InvalidArgument(
                "replicas-max-per-node can only be used with replicated or replicated-job mode"
            )
        return {"Global": {}}
    if mode == "replicated":
        replicated = {"Replicas": flags["replicas"]} if "replicas" in flags else {}
        return {"Replicated": replicated}
    raise InvalidArgument(f"unknown mode: {mode}, only replicated and global supported")


def _policy(flags: Flags, prefix: str, base: dict[str, Any]) -> dict[str, Any]:
    for suffix, key in _CONFIG_KEYS.items():
        if f"{prefix}-{suffix}" in flags:
            _put(base, key, flags[f"{prefix}-{suffix}"])
    # Go leaves a zero Delay out of the JSON (omitempty); keep docker's field order
    order = ["Parallelism", "Delay", "FailureAction", "Monitor", "MaxFailureRatio", "Order"]
    known = {k: base[k] for k in order if k in base and not (k == "Delay" and not base[k])}
    return {**known, **{k: v for k, v in base.items() if k not in order}}


def _restart(flags: Flags, base: dict[str, Any]) -> dict[str, Any]:
    for flag, key in _RESTART_KEYS.items():
        if flag in flags:
            _put(base, key, flags[flag])
    return base


def _resources(flags: Flags, base: dict[str, Any]) -> dict[str, Any]:
    limits, reservations = _sub(base, "Limits"), _sub(base, "Reservations")
    targets = (limits, limits, limits, reservations, reservations)
    keys = ("NanoCPUs", "MemoryBytes", "Pids", "NanoCPUs", "MemoryBytes")
    for flag, target, key in zip(_RESOURCE_FLAGS, targets, keys, strict=True):
        if flag in flags:
            _put(target, key, flags[flag])
    return base


# --- create -----------------------------------------------------------------------------------


def build_spec(flags: Flags, image: str, args: list[str]) -> dict[str, Any]:
    """The POST /services/create body for `service create [flags] IMAGE [ARG...]`."""
    health = health_config(flags)
    mode = _service_mode(flags)
    container: dict[str, Any] = {"Image": image}
    optional = (
        ("Labels", dict(flags.get("container-label") or {})),
        ("Command", flags.get("entrypoint")),
        ("Args", args),
        ("Hostname", flags.get("hostname")),
        ("Env", make_env(flags.get("env") or [])),
        ("Dir", flags.get("workdir")),
        ("User", flags.get("user")),
    )
    container.update({k: v for k, v in optional if v})
    container["Init"] = bool(flags.get("init"))
    more = (
        ("StopSignal", flags.get("stop-signal")),
        ("TTY", flags.get("tty")),
        ("ReadOnly", flags.get("read-only")),
        ("StopGracePeriod", flags.get("stop-grace-period")),
        ("Healthcheck", health),
    )
    container.update({k: v for k, v in more if v or (k == "StopGracePeriod" and v == 0)})
    container["DNSConfig"] = {}
    task: dict[str, Any] = {"ContainerSpec": container}
    task["Resources"] = _resources(flags, {"Limits": {}, "Reservations": {}})
    if _changed(flags, *_RESTART_KEYS):
        task["RestartPolicy"] = _restart(flags, dict(DEFAULT_RESTART))
    placement: dict[str, Any] = {}
    if flags.get("constraint"):
        placement["Constraints"] = list(flags["constraint"])
    if flags.get("placement-pref"):
        placement["Preferences"] = list(flags["placement-pref"])
    if flags.get("replicas-max-per-node"):
        placement["MaxReplicas"] = flags["replicas-max-per-node"]
    task["Placement"] = placement
    if flags.get("network"):
        task["Networks"] = sorted(flags["network"], key=lambda n: n["Target"])
    task["ForceUpdate"] = 0
    spec: dict[str, Any] = {}
    if flags.get("name"):
        spec["Name"] = flags["name"]
    spec["Labels"] = dict(flags.get("label") or {})
    spec["TaskTemplate"] = task
    spec["Mode"] = mode
    for prefix, key in (("update", "UpdateConfig"), ("rollback", "RollbackConfig")):
        if any(f"{prefix}-{suffix}" in flags for suffix in _CONFIG_KEYS):
            spec[key] = _policy(flags, prefix, dict(DEFAULT_UPDATE))
    endpoint: dict[str, Any] = {"Mode": flags.get("endpoint-mode", "vip")}
    if flags.get("publish"):
        endpoint["Ports"] = list(flags["publish"])
    spec["EndpointSpec"] = endpoint
    return spec


# --- update -----------------------------------------------------------------------------------


def _update_map(obj: dict[str, Any], name: str, flags: Flags, add: str, rm: str) -> None:
    current = _get(obj, name)
    if current is not None and rm in flags:
        for key in flags[rm]:
            current.pop(key, None)
    if add in flags:
        if current is None:
            current = {}
        current.update(flags[add])
        _put(obj, name, current)


def _update_env(container: dict[str, Any], flags: Flags) -> None:
    if not _changed(flags, "env-add", "env-rm"):
        return
    removed = set(flags.get("env-rm") or [])
    env = [e for e in (_get(container, "Env") or []) if e.partition("=")[0] not in removed]
    for item in flags.get("env-add") or []:
        key = item.partition("=")[0]
        at = next((i for i, e in enumerate(env) if e.partition("=")[0] == key), None)
        if at is None:
            env.append(item)
        else:
            env[at] = item
    _put(container, "Env", env)


def _removes(rm: Mapping[str, Any], port: Mapping[str, Any]) -> bool:
    """Whether removal `rm` names `port`: same protocol and mode, and each given port number."""
    return (
        (_get(port, "Protocol") or "tcp") == (rm.get("Protocol") or "tcp")
        and (_get(port, "PublishMode") or "ingress") == (rm.get("PublishMode") or "ingress")
        and (rm.get("TargetPort") is None or _get(port, "TargetPort") == rm["TargetPort"])
        and (not rm.get("PublishedPort") or _get(port, "PublishedPort") == rm["PublishedPort"])
    )


def _port_key(port: Mapping[str, Any]) -> str:
    return (
        f"{_get(port, 'PublishedPort') or 0}:{_get(port, 'TargetPort') or 0}/"
        f"{_get(port, 'Protocol') or ''}/{_get(port, 'PublishMode') or ''}"
    )


def update_ports(
    ports: list[dict[str, Any]], add: list[dict[str, Any]], remove: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """docker's updatePorts: drop removed ports, add new ones, sort by `pub:target/proto/mode`.

    A removal matches by target port, protocol and mode like docker's; when it names a
    published port (`published=9090,target=80`, `9090:80`) that must match too, and a bare
    port that matches no target port (`--publish-rm 9090` for `9090->80`) removes the port
    published there, which docker would silently keep.
    """
    unique: dict[str, dict[str, Any]] = {}
    for port in ports:
        unique.setdefault(_port_key(port), port)
    kept = list(unique.values())
    for rm in remove:
        matched = [p for p in kept if _removes(rm, p)]
        if not matched and not rm.get("PublishedPort"):
            by_published = {**rm, "PublishedPort": rm.get("TargetPort"), "TargetPort": None}
            matched = [p for p in kept if _removes(by_published, p)]
        kept = [p for p in kept if not any(p is m for m in matched)]
    for port in add:
        if _port_key(port) not in unique:
            kept.append(port)
    return sorted(kept, key=_port_key)


def _update_placement(task: dict[str, Any], flags: Flags) -> None:
    if _changed(flags, "constraint-add", "constraint-rm"):
        placement = _sub(task, "Placement")
        current = list(_get(placement, "Constraints") or []) + list(
            flags.get("constraint-add") or []
        )
        removed = set(flags.get("constraint-rm") or [])
        _put(placement, "Constraints", sorted(c for c in current if c not in removed))
    if _changed(flags, "placement-pref-add", "placement-pref-rm"):
        placement = _sub(task, "Placement")
        prefs = list(_get(placement, "Preferences") or [])
        gone = {p["Spread"]["SpreadDescriptor"] for p in flags.get("placement-pref-rm") or []}
        prefs = [p for p in prefs if (_get(p, "Spread") or {}).get("SpreadDescriptor") not in gone]
        _put(placement, "Preferences", prefs + list(flags.get("placement-pref-add") or []))
    if "replicas-max-per-node" in flags:
        _put(_sub(task, "Placement"), "MaxReplicas", flags["replicas-max-per-node"])


def _update_networks(task: dict[str, Any], flags: Flags) -> None:
    if not _changed(flags, "network-add", "network-rm"):
        return
    removed = set(flags.get("network-rm") or [])
    networks = [n for n in (_get(task, "Networks") or []) if _get(n, "Target") not in removed]
    present = {_get(n, "Target") for n in networks}
    for net in flags.get("network-add") or []:
        if net["Target"] in present:
            raise InvalidArgument(f"service is already attached to network {net['Target']}")
        networks.append(net)
        present.add(net["Target"])
    _put(task, "Networks", sorted(networks, key=lambda n: str(_get(n, "Target"))))


def check_update_flags(flags: Flags) -> None:
    """Refuse contradictory update flags (before the service is even fetched)."""
    if flags.get("no-healthcheck") and _changed(flags, *_HEALTH_FLAGS):
        raise InvalidArgument("--no-healthcheck conflicts with --health-* options")


def _update_health(container: dict[str, Any], flags: Flags) -> None:
    if not _changed(flags, "no-healthcheck", *_HEALTH_FLAGS):
        return
    check_update_flags(flags)
    if flags.get("no-healthcheck"):
        _put(container, "Healthcheck", {"Test": ["NONE"]})
        return
    health = _sub(container, "Healthcheck")
    if (_get(health, "Test") or [None])[0] == "NONE":
        _put(health, "Test", None)
    for flag, key in _HEALTH_KEYS.items():
        if flag in flags:
            _put(health, key, flags[flag])
    if "health-cmd" in flags:
        _put(health, "Test", ["CMD-SHELL", flags["health-cmd"]] if flags["health-cmd"] else None)


def apply_update(spec: dict[str, Any], flags: Flags) -> None:
    """Edit `spec` (a service's current Spec) as `docker service update` would."""
    task = _sub(spec, "TaskTemplate")
    container = _sub(task, "ContainerSpec")
    _update_map(spec, "Labels", flags, "label-add", "label-rm")
    _update_map(container, "Labels", flags, "container-label-add", "container-label-rm")
    for flag, key in _CONTAINER_KEYS.items():
        if flag in flags:
            _put(container, key, flags[flag])
    _update_env(container, flags)
    if _changed(flags, *_RESOURCE_FLAGS):
        _resources(flags, _sub(task, "Resources"))
    if _changed(flags, *_RESTART_KEYS):
        current = _get(task, "RestartPolicy")
        _put(task, "RestartPolicy", _restart(flags, current if current else dict(DEFAULT_RESTART)))
    _update_placement(task, flags)
    _update_networks(task, flags)
    if "replicas" in flags:
        replicated = _get(_get(spec, "Mode") or {}, "Replicated")
        if not isinstance(replicated, dict):
            raise InvalidArgument("replicas can only be used with replicated mode")
        _put(replicated, "Replicas", flags["replicas"])
    for prefix, key in (("update", "UpdateConfig"), ("rollback", "RollbackConfig")):
        if any(f"{prefix}-{suffix}" in flags for suffix in _CONFIG_KEYS):
            current = _get(spec, key)
            _put(spec, key, _policy(flags, prefix, current if current else dict(DEFAULT_UPDATE)))
    if "endpoint-mode" in flags:
        _put(_sub(spec, "EndpointSpec"), "Mode", flags["endpoint-mode"])
    if _changed(flags, "publish-add", "publish-rm"):
        endpoint = _sub(spec, "EndpointSpec")
        ports = update_ports(
            list(_get(endpoint, "Ports") or []),
            list(flags.get("publish-add") or []),
            list(flags.get("publish-rm") or []),
        )
        _put(endpoint, "Ports", ports)
    if flags.get("force"):
        _put(task, "ForceUpdate", int(_get(task, "ForceUpdate") or 0) + 1)
    _update_health(container, flags)
