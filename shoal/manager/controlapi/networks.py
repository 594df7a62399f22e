"""Swarm networks: validation, create / remove, the built-in `ingress`, service attachments.

Only swarm-scoped overlay networks exist in shoal: the node-local drivers (bridge, host,
macvlan, ...) belong to a container engine, which shoal is not. Networks are objects of the
replicated store; each gets its subnet at create (`allocator/netalloc.py`), services a VIP
and tasks an address on it; the nodes give tasks an interface and DNS on it (see
docs/design/service-networks.md).

`ingress` is not stored: it is derived from the cluster object (ID included), so every
manager answers the same network without a write at `swarm init`. It stands for the
routing mesh, which shoal always has; it can be neither created nor removed.

Service specs name networks by name or ID (`docker stack deploy` sends names); the stored
spec always holds IDs, as swarmkit's does, so renaming or re-creating a network never
silently re-targets a service.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

import msgspec

from shoal.api.types import (
    IPAM,
    IPAMConfig,
    Network,
    NetworkAttachmentConfig,
    NetworkSpec,
    ServiceSpec,
    Swarm,
)
from shoal.errors import Ambiguous, Conflict, InvalidArgument, NotFound
from shoal.manager.allocator.netalloc import allocate_ipam, tasks_on_network
from shoal.manager.state.store import ReadView, Store, Tx, new_id

__all__ = [
    "INGRESS",
    "INGRESS_VNI",
    "all_networks",
    "create_network",
    "ingress_network",
    "network_users",
    "remove_network",
    "resolve_attachments",
    "resolve_network",
    "validate_network_spec",
]

INGRESS = "ingress"
INGRESS_VNI = 4096  # the VXLAN ID of the mesh (see DESIGN: overlay)
INTERNAL_LABEL = "com.docker.swarm.internal"
_PREDEFINED = ("bridge", "host", "none", INGRESS)
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"rpc error: code = InvalidArgument desc = {message}")


# -- the built-in ingress network -------------------------------------------------------


def _derived_id(seed: str) -> str:
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    out = ""
    for _ in range(25):
        number, rest = divmod(number, 36)
        out += _ALPHABET[rest]
    return out


def ingress_network(cluster: Swarm) -> Network:
    """The routing mesh's network, as `docker network inspect ingress` shows it."""
    pools = cluster.default_addr_pool or []
    return Network(
        id=_derived_id(f"ingress:{cluster.id}"),
        version=msgspec.structs.replace(cluster.version),
        created_at=cluster.created_at,
        updated_at=cluster.created_at,
        spec=NetworkSpec(
            name=INGRESS,
            driver="overlay",
            scope="swarm",
            ingress=True,
            ipam=IPAM(driver="default", config=[IPAMConfig(subnet=p) for p in pools] or None),
            options={"com.docker.network.driver.overlay.vxlanid_list": str(INGRESS_VNI)},
        ),
    )


def all_networks(view: ReadView | Tx) -> list[Network]:
    """Every network: the stored ones and, once a cluster exists, `ingress`."""
    networks: list[Network] = view.networks.list()
    clusters = view.clusters.list()
    if clusters:
        networks.append(ingress_network(clusters[0]))
    return networks


def resolve_network(view: ReadView | Tx, ref: str) -> Network:
    """Full ID, then exact name, then a unique ID prefix (like every other kind)."""
    networks = all_networks(view)
    for matches in (
        [n for n in networks if n.id == ref],
        [n for n in networks if n.spec.name == ref],
        [n for n in networks if ref and n.id.startswith(ref)],
    ):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise Ambiguous(f"network {ref} is ambiguous ({len(matches)} matches found)")
    raise NotFound(f"network {ref} not found")


# -- create / remove --------------------------------------------------------------------


def validate_network_spec(spec: NetworkSpec) -> NetworkSpec:
    """`spec` checked, with Docker's defaults for a swarm network filled in (a copy)."""
    if not spec.name:
        raise _bad("meta: name must be provided")
    if len(spec.name) > 128 or not _NAME.match(spec.name):
        raise _bad(
            f"invalid network name {spec.name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    driver = spec.driver or "bridge"  # Docker's default, and the docker CLI's
    if driver != "overlay":
        raise InvalidArgument(
            f'shoal only supports swarm-scoped networks with the overlay driver, not "{driver}":'
            f" use `docker network create -d overlay {spec.name}`"
        )
    if spec.scope not in ("", "swarm"):
        raise InvalidArgument(
            f'shoal only supports swarm-scoped networks, not scope "{spec.scope}"'
        )
    if spec.name in _PREDEFINED:
        raise InvalidArgument(f"{spec.name} is a pre-defined network and cannot be created")
    if spec.ingress:
        raise InvalidArgument(
            "shoal has one ingress network, the routing mesh's, and it cannot be re-created"
        )
    if spec.config_only or spec.config_from not in (None, {}, {"Network": ""}):
        raise InvalidArgument("shoal does not support config-only networks (ConfigOnly/ConfigFrom)")
    if spec.enable_ipv6:
        raise InvalidArgument("shoal's overlay networks are IPv4 only (EnableIPv6)")
    if spec.enable_ipv4 is False:
        raise InvalidArgument("shoal's overlay networks cannot disable IPv4 (EnableIPv4)")
    if INTERNAL_LABEL in (spec.labels or {}):
        raise _bad(
            f"label {INTERNAL_LABEL} is for predefined internal networks and cannot be "
            "applied by users"
        )
    if "encrypted" in (spec.options or {}):
        raise InvalidArgument(
            "shoal cannot encrypt overlay traffic (--opt encrypted): this kernel has neither "
            "a wireguard device type nor ESP AEAD algorithms (see docs/design/service-networks.md)"
        )
    ipam = _validate_ipam(spec.ipam)
    return msgspec.structs.replace(
        spec, driver="overlay", scope="swarm", check_duplicate=None, config_from=None, ipam=ipam
    )


def _validate_ipam(ipam: IPAM | None) -> IPAM:
    ipam = ipam or IPAM()
    if ipam.driver not in ("", "default"):
        raise _bad("invalid IPAM specified: shoal only has the default IPAM driver")
    for conf in ipam.config or []:
        try:
            subnet = ipaddress.IPv4Network(conf.subnet, strict=False)
        except ValueError:
            raise _bad(f"ipam configuration: invalid subnet {conf.subnet}") from None
        if conf.ip_range:
            try:
                ip_range = ipaddress.IPv4Network(conf.ip_range, strict=False)
            except ValueError:
                raise _bad(f"ipam configuration: invalid range {conf.ip_range}") from None
            if not ip_range.subnet_of(subnet):
                raise _bad(
                    f"ipam configuration: subnet {conf.subnet} does not contain range "
                    f"{conf.ip_range}"
                )
        if conf.gateway:
            try:
                gateway = ipaddress.IPv4Address(conf.gateway)
            except ValueError:
                raise _bad(f"ipam configuration: invalid gateway {conf.gateway}") from None
            if gateway not in subnet:
                raise _bad(
                    f"ipam configuration: subnet {conf.subnet} does not contain gateway "
                    f"{conf.gateway}"
                )
    return msgspec.structs.replace(ipam, driver="default")


async def create_network(store: Store, spec: NetworkSpec) -> Network:
    full = validate_network_spec(spec)

    def fn(tx: Tx) -> Network:
        if any(n.spec.name == full.name for n in all_networks(tx)):
            raise Conflict(
                "rpc error: code = AlreadyExists desc = network with name "
                f"{full.name} already exists"
            )
        network = Network(id=new_id(), spec=allocate_ipam(tx, full))
        tx.networks.create(network)
        return network

    return await store.update(fn)


def network_users(view: ReadView | Tx, network_id: str) -> list[str]:
    """IDs of the services attached to the network."""
    return [
        s.id for s in view.services.list() if network_id in {a.target for a in _attachments(s.spec)}
    ]


async def remove_network(store: Store, ref: str) -> Network:
    def fn(tx: Tx) -> Network:
        network = resolve_network(tx, ref)
        if network.spec.ingress:
            raise InvalidArgument(
                "rpc error: code = PermissionDenied desc = ingress is the routing mesh's "
                "network: shoal cannot remove it"
            )
        users = network_users(tx, network.id)
        if users:
            raise InvalidArgument(
                "rpc error: code = FailedPrecondition desc = network "
                f"{network.id} is in use by service {users[0]}"
            )
        tasks = tasks_on_network(tx, network.id)
        if tasks:
            raise InvalidArgument(
                "rpc error: code = FailedPrecondition desc = network "
                f"{network.id} is in use by task {tasks[0].id}"
            )
        tx.networks.delete(network.id)
        return network

    return await store.update(fn)


# -- service attachments ----------------------------------------------------------------


def _attachments(spec: ServiceSpec) -> list[NetworkAttachmentConfig]:
    return [*(spec.task_template.networks or []), *(spec.networks or [])]


def resolve_attachments(view: ReadView | Tx, spec: ServiceSpec) -> ServiceSpec:
    """A copy of `spec` whose network attachments target network IDs, not names."""
    if not _attachments(spec):
        return spec

    def resolved(items: list[NetworkAttachmentConfig] | None) -> list[NetworkAttachmentConfig]:
        out = []
        for item in items or []:
            network = resolve_network(view, item.target)
            if network.spec.ingress:
                raise _bad(
                    f"service cannot be explicitly attached to the ingress network "
                    f"{network.spec.name!r}"
                )
            out.append(msgspec.structs.replace(item, target=network.id))
        return out

    task_networks = resolved(spec.task_template.networks)
    spec_networks = resolved(spec.networks)
    targets = [a.target for a in (*task_networks, *spec_networks)]
    if len(set(targets)) != len(targets):
        raise _bad("duplicate network attachment: a service attaches to a network once")
    task = msgspec.structs.replace(spec.task_template, networks=task_networks or None)
    return msgspec.structs.replace(spec, task_template=task, networks=spec_networks or None)
