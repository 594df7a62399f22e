"""ServiceSpec bodies from `service create` flags, and what `service update` shares: pure.

Input is the set of flags the user gave (docker's `flags.Changed`), already parsed: a mapping
from docker's flag name (`publish`, `env-add`, `restart-delay`, ...) to its value (port
dicts, lists of strings, nanoseconds, ...). `build_spec` returns the body docker's
`ServiceSpec` would marshal to (same keys, same order, same omitted zero values, swarmkit's
defaults for a partly given restart/update policy). The `ci_*` helpers read and write specs
decoded from a daemon's JSON with case-insensitive keys, as Go decodes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shoal.errors import InvalidArgument

__all__ = [
    "CONFIG_KEYS",
    "CONTAINER_KEYS",
    "DEFAULT_RESTART",
    "DEFAULT_UPDATE",
    "HEALTH_FLAGS",
    "HEALTH_KEYS",
    "RESOURCE_FLAGS",
    "RESTART_KEYS",
    "RUNTIME_LABEL",
    "Flags",
    "apply_runtime",
    "build_spec",
    "changed",
    "ci_get",
    "ci_key",
    "ci_put",
    "ci_sub",
    "effective_caps",
    "health_config",
    "make_env",
    "merge_policy",
    "merge_resources",
    "merge_restart",
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
CONFIG_KEYS = {
    "parallelism": "Parallelism",
    "delay": "Delay",
    "failure-action": "FailureAction",
    "monitor": "Monitor",
    "max-failure-ratio": "MaxFailureRatio",
    "order": "Order",
}
HEALTH_FLAGS = (
    "health-cmd",
    "health-interval",
    "health-timeout",
    "health-start-period",
    "health-retries",
)
HEALTH_KEYS = {
    "health-interval": "Interval",
    "health-timeout": "Timeout",
    "health-start-period": "StartPeriod",
    "health-retries": "Retries",
}
RESTART_KEYS = {
    "restart-condition": "Condition",
    "restart-delay": "Delay",
    "restart-max-attempts": "MaxAttempts",
    "restart-window": "Window",
}
CONTAINER_KEYS = {
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
    "oom-score-adj": "OomScoreAdj",
}
RUNTIME_LABEL = "shoal.runtime"
RESOURCE_FLAGS = ("limit-cpu", "limit-memory", "limit-pids", "reserve-cpu", "reserve-memory")


# --- case-insensitive access to specs decoded from JSON -------------------------------------


def ci_key(obj: Mapping[str, Any], name: str) -> str:
    if name in obj:
        return name
    lower = name.lower()
    return next((k for k in obj if k.lower() == lower), name)


def ci_get(obj: Mapping[str, Any] | None, name: str) -> Any:
    return None if obj is None else obj.get(ci_key(obj, name))


def ci_put(obj: dict[str, Any], name: str, value: Any) -> None:
    obj[ci_key(obj, name)] = value


def ci_sub(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """The child object `name`, created (or replacing a null) when missing."""
    key = ci_key(obj, name)
    if not isinstance(obj.get(key), dict):
        obj[key] = {}
    child: dict[str, Any] = obj[key]
    return child


def changed(flags: Flags, *names: str) -> bool:
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
        or changed(flags, "health-interval", "health-timeout", "health-start-period")
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
    for flag, key in HEALTH_KEYS.items():
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
    raise InvalidArgument(f"Unknown mode: {mode}, only replicated and global supported")


def merge_policy(flags: Flags, prefix: str, base: dict[str, Any]) -> dict[str, Any]:
    for suffix, key in CONFIG_KEYS.items():
        if f"{prefix}-{suffix}" in flags:
            ci_put(base, key, flags[f"{prefix}-{suffix}"])
    # Go leaves a zero Delay out of the JSON (omitempty); keep docker's field order
    order = ["Parallelism", "Delay", "FailureAction", "Monitor", "MaxFailureRatio", "Order"]
    known = {k: base[k] for k in order if k in base and not (k == "Delay" and not base[k])}
    return {**known, **{k: v for k, v in base.items() if k not in order}}


def merge_restart(flags: Flags, base: dict[str, Any]) -> dict[str, Any]:
    for flag, key in RESTART_KEYS.items():
        if flag in flags:
            ci_put(base, key, flags[flag])
    return base


def merge_resources(flags: Flags, base: dict[str, Any]) -> dict[str, Any]:
    limits, reservations = ci_sub(base, "Limits"), ci_sub(base, "Reservations")
    targets = (limits, limits, limits, reservations, reservations)
    keys = ("NanoCPUs", "MemoryBytes", "Pids", "NanoCPUs", "MemoryBytes")
    for flag, target, key in zip(RESOURCE_FLAGS, targets, keys, strict=True):
        if flag in flags:
            ci_put(target, key, flags[flag])
    return base


def effective_caps(add: list[str], drop: list[str]) -> tuple[list[str], list[str]]:
    """docker's EffectiveCapAddCapDrop: a capability both added and dropped is neither."""
    adds, drops = set(add), set(drop)
    cap_add = ["ALL"] if "ALL" in adds else sorted(adds - drops)
    cap_drop = ["ALL"] if "ALL" in drops else sorted(drops - adds)
    return cap_add, cap_drop


def apply_runtime(container: dict[str, Any], flags: Flags) -> None:
    """`--runtime exec` is the label `shoal.runtime=exec`; `--runtime oci` removes it."""
    if "runtime" not in flags:
        return
    labels = ci_get(container, "Labels") or {}
    if flags["runtime"] == "exec":
        labels[RUNTIME_LABEL] = "exec"
    else:
        labels.pop(RUNTIME_LABEL, None)
    ci_put(container, "Labels", labels)


def _container_extras(container: dict[str, Any], flags: Flags) -> None:
    cap_add, cap_drop = effective_caps(flags.get("cap-add") or [], flags.get("cap-drop") or [])
    extras = (
        ("Mounts", list(flags.get("mount") or [])),
        ("Secrets", list(flags.get("secret") or [])),
        ("Configs", list(flags.get("config") or [])),
        ("Sysctls", dict(flags.get("sysctl") or {})),
        ("CapabilityAdd", cap_add),
        ("CapabilityDrop", cap_drop),
        ("Ulimits", sorted(flags.get("ulimit") or [], key=lambda u: str(u["Name"]))),
        ("OomScoreAdj", flags.get("oom-score-adj")),
    )
    container.update({k: v for k, v in extras if v})
    apply_runtime(container, flags)
    if not container.get("Labels"):
        container.pop("Labels", None)


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
    _container_extras(container, flags)
    task: dict[str, Any] = {"ContainerSpec": container}
    task["Resources"] = merge_resources(flags, {"Limits": {}, "Reservations": {}})
    if changed(flags, *RESTART_KEYS):
        task["RestartPolicy"] = merge_restart(flags, dict(DEFAULT_RESTART))
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
        if any(f"{prefix}-{suffix}" in flags for suffix in CONFIG_KEYS):
            spec[key] = merge_policy(flags, prefix, dict(DEFAULT_UPDATE))
    endpoint: dict[str, Any] = {"Mode": flags.get("endpoint-mode", "vip")}
    if flags.get("publish"):
        endpoint["Ports"] = list(flags["publish"])
    spec["EndpointSpec"] = endpoint
    return spec
