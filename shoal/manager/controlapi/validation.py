"""Validation and defaults of service specs: pure, no I/O.

`validate_service_spec` refuses what swarmkit refuses, with messages a user can act on,
and the mesh's service labels (`shoal.mesh.policy`) when malformed; `check_mesh_ports`
refuses a health port that another service's port (or health port) already holds;
`with_defaults` fills Docker's defaults into a spec before it is stored (so what `GET`
returns can be posted back unchanged, as the docker CLI does on update).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from shoal.api.types import (
    EndpointPortConfig,
    EndpointSpec,
    ReplicatedMode,
    RestartPolicy,
    Service,
    ServiceMode,
    ServiceSpec,
    UpdateConfig,
)
from shoal.errors import InvalidArgument
from shoal.manager.controlapi.container_checks import check_container, check_resources
from shoal.mesh.policy import (
    HEALTH_PORT_LABEL,
    PROXY_PROTOCOL_LABEL,
    mesh_labels,
    proxy_protocol_ports,
)

__all__ = [
    "DEFAULT_RESTART_DELAY",
    "DEFAULT_STOP_GRACE",
    "check_mesh_ports",
    "validate_service_spec",
    "with_defaults",
]

SECOND = 1_000_000_000
DEFAULT_RESTART_DELAY = 5 * SECOND
DEFAULT_STOP_GRACE = 10 * SECOND
DEFAULT_MONITOR = 5 * SECOND
_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]*[a-zA-Z0-9])?$")
_ENV = re.compile(r"^[^=\s][^=]*(=.*)?$", re.DOTALL)


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"rpc error: code = InvalidArgument desc = {message}")


def validate_service_spec(spec: ServiceSpec) -> None:
    if not spec.name:
        raise _bad("name must be valid as a DNS name component")
    if len(spec.name) > 63 or not _NAME.match(spec.name):
        raise _bad(f"name must be valid as a DNS name component: {spec.name!r}")
    _validate_task(spec)
    _validate_mode(spec.mode)
    _validate_update(spec.update_config, "UpdateConfig")
    _validate_update(spec.rollback_config, "RollbackConfig")
    _validate_ports(spec.endpoint_spec)
    _validate_mesh_labels(spec)


def _validate_task(spec: ServiceSpec) -> None:
    task = spec.task_template
    container = task.container_spec
    if task.plugin_spec is not None or task.network_attachment_spec is not None:
        raise _bad("shoal runs container tasks only (PluginSpec/NetworkAttachmentSpec given)")
    if container is None:
        raise _bad("ContainerSpec: missing in service spec")
    if not container.image:
        raise _bad("ContainerSpec: image reference must be provided")
    for entry in container.env or []:
        if not _ENV.match(entry):
            raise _bad(f"ContainerSpec: invalid environment variable {entry!r}")
    check_container(container)
    if task.resources is not None:
        check_resources(task.resources)
    if container.stop_grace_period is not None and container.stop_grace_period < 0:
        raise _bad("ContainerSpec: StopGracePeriod cannot be negative")
    hc = container.health_check
    if hc is not None:
        for name, value in (
            ("Interval", hc.interval),
            ("Timeout", hc.timeout),
            ("StartPeriod", hc.start_period),
        ):
            if value != 0 and value < 1_000_000:
                raise _bad(f"HealthCheck: {name} must be at least 1ms")
        if hc.retries < 0:
            raise _bad("HealthCheck: Retries cannot be negative")
    rp = task.restart_policy
    if rp is not None:
        if rp.delay is not None and rp.delay < 0:
            raise _bad("TaskSpec: restart-delay cannot be negative")
        if rp.window < 0:
            raise _bad("TaskSpec: restart-window cannot be negative")
        if rp.max_attempts < 0:
            raise _bad("TaskSpec: restart-max-attempts cannot be negative")
    placement = task.placement
    if placement is not None:
        if placement.max_replicas < 0:
            raise _bad("TaskSpec: max-replicas cannot be negative")
        for constraint in placement.constraints or []:
            if not re.match(r"^\s*[\w.\-]+\s*(==|!=)\s*\S.*$", constraint):
                raise _bad(f"invalid constraint expression {constraint!r}")


def _validate_mode(mode: ServiceMode | None) -> None:
    if mode is None:
        return
    given = [
        m
        for m in (mode.replicated, mode.global_, mode.replicated_job, mode.global_job)
        if m is not None
    ]
    if len(given) > 1:
        raise _bad("only one service mode may be given")
    if mode.replicated_job is not None or mode.global_job is not None:
        raise _bad("job modes are not supported by shoal yet")
    if mode.replicated is not None and (mode.replicated.replicas or 0) < 0:
        raise _bad("Replicas cannot be negative")


def _validate_update(cfg: UpdateConfig | None, what: str) -> None:
    if cfg is None:
        return
    if cfg.parallelism < 0:
        raise _bad(f"{what}: parallelism cannot be negative")
    if cfg.delay < 0 or cfg.monitor < 0:
        raise _bad(f"{what}: delay and monitor cannot be negative")
    if cfg.failure_action not in ("", "pause", "continue", "rollback"):
        raise _bad(f"{what}: invalid failure action {cfg.failure_action!r}")
    if cfg.order not in ("", "stop-first", "start-first"):
        raise _bad(f"{what}: invalid order {cfg.order!r}")
    if not 0.0 <= cfg.max_failure_ratio <= 1.0:
        raise _bad(f"{what}: max failure ratio must be between 0 and 1")


def _validate_ports(endpoint: EndpointSpec | None) -> None:
    if endpoint is None:
        return
    if endpoint.mode == "dnsrr" and any(p.publish_mode != "host" for p in endpoint.ports or []):
        raise _bad("EndpointSpec: port published with ingress mode can't be used with dnsrr mode")
    seen: set[tuple[int, str]] = set()
    for port in endpoint.ports or []:
        proto = port.protocol or "tcp"
        if proto == "sctp":
            raise _bad("EndpointSpec: protocol sctp is not supported by shoal's routing mesh")
        if not 1 <= port.target_port <= 65535:
            raise _bad(f"EndpointSpec: invalid target port {port.target_port}: must be 1-65535")
        if not 0 <= port.published_port <= 65535:
            raise _bad(
                f"EndpointSpec: invalid published port {port.published_port}: must be 0-65535"
            )
        if port.published_port:
            key = (port.published_port, proto)
            if key in seen:
                raise _bad(
                    "EndpointSpec: duplicate published ports provided: "
                    f"{port.published_port}/{proto}"
                )
            seen.add(key)


def _validate_mesh_labels(spec: ServiceSpec) -> None:
    options = mesh_labels(spec.labels)
    if options.problems:
        raise _bad("; ".join(options.problems))
    _, bad = proxy_protocol_ports(spec.labels)
    if bad:
        raise _bad(
            f"label {PROXY_PROTOCOL_LABEL}: invalid item(s) {', '.join(repr(b) for b in bad)}: "
            'use PORT, PORT/tcp or PORT/udp, separated by commas (e.g. "8080,53/udp")'
        )
    for port in (spec.endpoint_spec.ports or []) if spec.endpoint_spec else []:
        if options.health_port and port.published_port == options.health_port and (
            port.protocol or "tcp"
        ) == "tcp":
            raise _bad(
                f"label {HEALTH_PORT_LABEL}: port {options.health_port} is also a published "
                f"port of this service ({options.health_port}/tcp); use another port"
            )


def _tcp_ports(ports: Iterable[EndpointPortConfig] | None) -> set[int]:
    return {p.published_port for p in ports or [] if p.published_port
            and (p.protocol or "tcp") == "tcp"}


def check_mesh_ports(
    service_id: str, spec: ServiceSpec, ports: list[EndpointPortConfig],
    others: Iterable[Service],
) -> None:
    """Refuse a health port that collides, cluster-wide, with another service's published
    TCP port or health port, and a published TCP port that is another's health port.

    `ports` are this service's ports after allocation. Every node serves every health port,
    and the kernel mesh takes a published port on every address: either would hide the other.
    """
    health = mesh_labels(spec.labels).health_port
    mine = _tcp_ports(ports)
    for other in others:
        if other.id == service_id:
            continue
        name = other.spec.name
        other_health = mesh_labels(other.spec.labels).health_port
        if health and health in _tcp_ports(other.endpoint.ports):
            raise _bad(f"label {HEALTH_PORT_LABEL}: port {health} is already published by "
                       f"service {name} ({health}/tcp)")
        if health and health == other_health:
            raise _bad(f"label {HEALTH_PORT_LABEL}: port {health} is already the health port "
                       f"of service {name}")
        if other_health and other_health in mine:
            raise _bad(f"published port {other_health}/tcp is already the health port of "
                       f"service {name} (label {HEALTH_PORT_LABEL})")


def with_defaults(spec: ServiceSpec) -> ServiceSpec:
    """A copy of `spec` with Docker's defaults filled in."""
    spec = msgspec.structs.replace(spec)
    mode = spec.mode or ServiceMode()
    no_replicas = mode.replicated is not None and mode.replicated.replicas is None
    if (mode.global_ is None and mode.replicated is None) or no_replicas:
        mode = msgspec.structs.replace(mode, replicated=ReplicatedMode(replicas=1))
    spec.mode = mode
    task = msgspec.structs.replace(spec.task_template)
    rp = task.restart_policy or RestartPolicy()
    task.restart_policy = msgspec.structs.replace(
        rp,
        condition=rp.condition or "any",
        delay=DEFAULT_RESTART_DELAY if rp.delay is None else rp.delay,
    )
    if task.container_spec is not None and task.container_spec.stop_grace_period is None:
        task.container_spec = msgspec.structs.replace(
            task.container_spec, stop_grace_period=DEFAULT_STOP_GRACE
        )
    spec.task_template = task
    spec.update_config = _update_defaults(spec.update_config)
    spec.rollback_config = _update_defaults(spec.rollback_config)
    endpoint = spec.endpoint_spec or EndpointSpec()
    spec.endpoint_spec = EndpointSpec(
        mode=endpoint.mode or "vip",
        ports=[_port_defaults(p) for p in endpoint.ports] if endpoint.ports else None,
    )
    return spec


def _update_defaults(cfg: UpdateConfig | None) -> UpdateConfig:
    cfg = cfg or UpdateConfig(parallelism=1)
    return msgspec.structs.replace(
        cfg,
        failure_action=cfg.failure_action or "pause",
        monitor=cfg.monitor or DEFAULT_MONITOR,
        order=cfg.order or "stop-first",
    )


def _port_defaults(port: EndpointPortConfig) -> EndpointPortConfig:
    return msgspec.structs.replace(
        port, protocol=port.protocol or "tcp", publish_mode=port.publish_mode or "ingress"
    )
