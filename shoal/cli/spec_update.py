"""`service update` flags applied to a service's current spec: pure.

`apply_update` edits a spec as returned by `GET /services/{id}` in place, like docker's
`updateService`, so that the whole spec is posted back with `?version=N`; every key is
found case-insensitively in what the daemon returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shoal.cli.spec import (
    CONFIG_KEYS,
    CONTAINER_KEYS,
    DEFAULT_RESTART,
    DEFAULT_UPDATE,
    HEALTH_FLAGS,
    HEALTH_KEYS,
    RESOURCE_FLAGS,
    RESTART_KEYS,
    Flags,
    apply_runtime,
    changed,
    ci_get,
    ci_put,
    ci_sub,
    merge_policy,
    merge_resources,
    merge_restart,
)
from shoal.errors import InvalidArgument

__all__ = ["apply_update", "check_update_flags", "update_ports"]


def _update_map(obj: dict[str, Any], name: str, flags: Flags, add: str, rm: str) -> None:
    current = ci_get(obj, name)
    if current is not None and rm in flags:
        for key in flags[rm]:
            current.pop(key, None)
    if add in flags:
        if current is None:
            current = {}
        current.update(flags[add])
        ci_put(obj, name, current)


def _update_env(container: dict[str, Any], flags: Flags) -> None:
    if not changed(flags, "env-add", "env-rm"):
        return
    removed = set(flags.get("env-rm") or [])
    env = [e for e in (ci_get(container, "Env") or []) if e.partition("=")[0] not in removed]
    for item in flags.get("env-add") or []:
        key = item.partition("=")[0]
        at = next((i for i, e in enumerate(env) if e.partition("=")[0] == key), None)
        if at is None:
            env.append(item)
        else:
            env[at] = item
    ci_put(container, "Env", env)


def _removes(rm: Mapping[str, Any], port: Mapping[str, Any]) -> bool:
    """Whether removal `rm` names `port`: same protocol and mode, and each given port number."""
    return (
        (ci_get(port, "Protocol") or "tcp") == (rm.get("Protocol") or "tcp")
        and (ci_get(port, "PublishMode") or "ingress") == (rm.get("PublishMode") or "ingress")
        and (rm.get("TargetPort") is None or ci_get(port, "TargetPort") == rm["TargetPort"])
        and (not rm.get("PublishedPort") or ci_get(port, "PublishedPort") == rm["PublishedPort"])
    )


def _port_key(port: Mapping[str, Any]) -> str:
    return (
        f"{ci_get(port, 'PublishedPort') or 0}:{ci_get(port, 'TargetPort') or 0}/"
        f"{ci_get(port, 'Protocol') or ''}/{ci_get(port, 'PublishMode') or ''}"
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
    if changed(flags, "constraint-add", "constraint-rm"):
        placement = ci_sub(task, "Placement")
        current = list(ci_get(placement, "Constraints") or []) + list(
            flags.get("constraint-add") or []
        )
        removed = set(flags.get("constraint-rm") or [])
        ci_put(placement, "Constraints", sorted(c for c in current if c not in removed))
    if changed(flags, "placement-pref-add", "placement-pref-rm"):
        placement = ci_sub(task, "Placement")
        prefs = list(ci_get(placement, "Preferences") or [])
        gone = {p["Spread"]["SpreadDescriptor"] for p in flags.get("placement-pref-rm") or []}
        prefs = [
            p for p in prefs if (ci_get(p, "Spread") or {}).get("SpreadDescriptor") not in gone
        ]
        ci_put(placement, "Preferences", prefs + list(flags.get("placement-pref-add") or []))
    if "replicas-max-per-node" in flags:
        ci_put(ci_sub(task, "Placement"), "MaxReplicas", flags["replicas-max-per-node"])


def _update_networks(task: dict[str, Any], flags: Flags) -> None:
    if not changed(flags, "network-add", "network-rm"):
        return
    removed = set(flags.get("network-rm") or [])
    networks = [n for n in (ci_get(task, "Networks") or []) if ci_get(n, "Target") not in removed]
    present = {ci_get(n, "Target") for n in networks}
    for net in flags.get("network-add") or []:
        if net["Target"] in present:
            raise InvalidArgument(f"service is already attached to network {net['Target']}")
        networks.append(net)
        present.add(net["Target"])
    ci_put(task, "Networks", sorted(networks, key=lambda n: str(ci_get(n, "Target"))))


def _update_mounts(container: dict[str, Any], flags: Flags) -> None:
    """docker's updateMounts: keyed by target, added ones replace, sorted by source/target
    (on every update, as docker's)."""
    if not changed(flags, "mount-add", "mount-rm") and not ci_get(container, "Mounts"):
        return
    by_target: dict[str, dict[str, Any]] = {}
    for mount in flags.get("mount-add") or []:
        if mount["Target"] in by_target:
            raise InvalidArgument("duplicate mount target")
        by_target[mount["Target"]] = mount
    for mount in ci_get(container, "Mounts") or []:
        by_target.setdefault(str(ci_get(mount, "Target")), mount)
    removed = set(flags.get("mount-rm") or [])
    mounts = [m for t, m in by_target.items() if t not in removed]
    mounts.sort(key=lambda m: (str(ci_get(m, "Source") or ""), str(ci_get(m, "Target"))))
    ci_put(container, "Mounts", mounts)


def _update_refs(container: dict[str, Any], flags: Flags, what: str, key: str) -> None:
    """docker's getUpdatedSecrets/Configs: `-rm` by name, `-add` appended (IDs resolved)."""
    if not changed(flags, f"{what}-add", f"{what}-rm"):
        return
    name_key = "SecretName" if what == "secret" else "ConfigName"
    removed = set(flags.get(f"{what}-rm") or [])
    refs = [r for r in ci_get(container, key) or [] if ci_get(r, name_key) not in removed]
    ci_put(container, key, refs + list(flags.get(f"{what}-add") or []))


def _update_ulimits(container: dict[str, Any], flags: Flags) -> None:
    if not changed(flags, "ulimit-add", "ulimit-rm"):
        return
    by_name = {str(ci_get(u, "Name")): u for u in ci_get(container, "Ulimits") or []}
    for name in flags.get("ulimit-rm") or []:
        by_name.pop(name.partition("=")[0], None)
    for ulimit in flags.get("ulimit-add") or []:
        by_name[ulimit["Name"]] = ulimit
    ci_put(container, "Ulimits", [by_name[n] for n in sorted(by_name)])


def _update_caps(container: dict[str, Any], flags: Flags) -> None:
    """An added capability leaves the drop list and the other way round (docker's rule)."""
    if not changed(flags, "cap-add", "cap-drop"):
        return
    adds, drops = flags.get("cap-add") or [], flags.get("cap-drop") or []
    cap_add = set(ci_get(container, "CapabilityAdd") or []) - set(drops)
    cap_drop = set(ci_get(container, "CapabilityDrop") or []) - set(adds)
    cap_add |= set(adds) - set(drops)
    cap_drop |= set(drops) - set(adds)
    ci_put(container, "CapabilityAdd", ["ALL"] if "ALL" in cap_add else sorted(cap_add))
    ci_put(container, "CapabilityDrop", ["ALL"] if "ALL" in cap_drop else sorted(cap_drop))


def _update_container(container: dict[str, Any], flags: Flags) -> None:
    _update_map(container, "Sysctls", flags, "sysctl-add", "sysctl-rm")
    _update_mounts(container, flags)
    _update_refs(container, flags, "secret", "Secrets")
    _update_refs(container, flags, "config", "Configs")
    _update_ulimits(container, flags)
    _update_caps(container, flags)
    apply_runtime(container, flags)


def check_update_flags(flags: Flags) -> None:
    """Refuse contradictory update flags (before the service is even fetched)."""
    if flags.get("no-healthcheck") and changed(flags, *HEALTH_FLAGS):
        raise InvalidArgument("--no-healthcheck conflicts with --health-* options")


def _update_health(container: dict[str, Any], flags: Flags) -> None:
    if not changed(flags, "no-healthcheck", *HEALTH_FLAGS):
        return
    check_update_flags(flags)
    if flags.get("no-healthcheck"):
        ci_put(container, "Healthcheck", {"Test": ["NONE"]})
        return
    health = ci_sub(container, "Healthcheck")
    if (ci_get(health, "Test") or [None])[0] == "NONE":
        ci_put(health, "Test", None)
    for flag, key in HEALTH_KEYS.items():
        if flag in flags:
            ci_put(health, key, flags[flag])
    if "health-cmd" in flags:
        ci_put(health, "Test", ["CMD-SHELL", flags["health-cmd"]] if flags["health-cmd"] else None)


def apply_update(spec: dict[str, Any], flags: Flags) -> None:
    """Edit `spec` (a service's current Spec) as `docker service update` would."""
    task = ci_sub(spec, "TaskTemplate")
    container = ci_sub(task, "ContainerSpec")
    _update_map(spec, "Labels", flags, "label-add", "label-rm")
    _update_map(container, "Labels", flags, "container-label-add", "container-label-rm")
    for flag, key in CONTAINER_KEYS.items():
        if flag in flags:
            ci_put(container, key, flags[flag])
    _update_env(container, flags)
    _update_container(container, flags)
    if changed(flags, *RESOURCE_FLAGS):
        merge_resources(flags, ci_sub(task, "Resources"))
    if changed(flags, *RESTART_KEYS):
        current = ci_get(task, "RestartPolicy")
        ci_put(
            task,
            "RestartPolicy",
            merge_restart(flags, current if current else dict(DEFAULT_RESTART)),
        )
    _update_placement(task, flags)
    _update_networks(task, flags)
    if "replicas" in flags:
        replicated = ci_get(ci_get(spec, "Mode") or {}, "Replicated")
        if not isinstance(replicated, dict):
            raise InvalidArgument("replicas can only be used with replicated mode")
        ci_put(replicated, "Replicas", flags["replicas"])
    for prefix, key in (("update", "UpdateConfig"), ("rollback", "RollbackConfig")):
        if any(f"{prefix}-{suffix}" in flags for suffix in CONFIG_KEYS):
            current = ci_get(spec, key)
            ci_put(
                spec, key, merge_policy(flags, prefix, current if current else dict(DEFAULT_UPDATE))
            )
    if "endpoint-mode" in flags:
        ci_put(ci_sub(spec, "EndpointSpec"), "Mode", flags["endpoint-mode"])
    if changed(flags, "publish-add", "publish-rm"):
        endpoint = ci_sub(spec, "EndpointSpec")
        ports = update_ports(
            list(ci_get(endpoint, "Ports") or []),
            list(flags.get("publish-add") or []),
            list(flags.get("publish-rm") or []),
        )
        ci_put(endpoint, "Ports", ports)
    if flags.get("force"):
        ci_put(task, "ForceUpdate", int(ci_get(task, "ForceUpdate") or 0) + 1)
    _update_health(container, flags)
