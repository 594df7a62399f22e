"""The mesh's service labels at the control API (pure validation) and on the way to the
nodes: what `published_ports` sends workers, and what the mesh makes of it (`port_spec`)."""

from __future__ import annotations

import msgspec
import pytest

from shoal.api.codec import decode_body
from shoal.api.types import (
    Endpoint,
    EndpointPortConfig,
    EndpointSpec,
    Service,
    ServiceSpec,
)
from shoal.cluster.wire import PublishedPort
from shoal.errors import InvalidArgument
from shoal.manager.controlapi.validation import check_mesh_ports, validate_service_spec
from shoal.manager.dispatcher.ports import published_ports
from shoal.mesh.model import PortSpec
from shoal.node.mesh_sync import PortFeed, port_spec

LOCAL = {"shoal.mesh.traffic-policy": "local", "shoal.mesh.health-port": "10256"}


def spec(labels: dict[str, str], *ports: tuple[int, str]) -> ServiceSpec:
    body = {
        "Name": "web",
        "Labels": labels,
        "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}},
        "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": number, "Protocol": proto}
                                   for number, proto in ports]},
    }
    return decode_body(msgspec.json.encode(body), ServiceSpec)


def ports_of(given: ServiceSpec) -> list[EndpointPortConfig]:
    return list(given.endpoint_spec.ports or []) if given.endpoint_spec else []


def service(sid: str, name: str, labels: dict[str, str], *ports: tuple[int, str]) -> Service:
    given = [EndpointPortConfig(protocol=proto, target_port=80, published_port=number,
                                publish_mode="ingress") for number, proto in ports]
    return Service(id=sid, spec=ServiceSpec(name=name, labels=labels),
                   endpoint=Endpoint(spec=EndpointSpec(), ports=given or None))


def test_good_labels_pass() -> None:
    validate_service_spec(spec(LOCAL, (8080, "tcp"), (10256, "udp")))  # udp 10256: no clash
    validate_service_spec(spec({"shoal.mesh.traffic-policy": "cluster"}, (8080, "tcp")))
    validate_service_spec(spec({"shoal.mesh.proxy-protocol": "8080,53/udp"}, (8080, "tcp")))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"shoal.mesh.traffic-policy": "nearest"},
         'label shoal.mesh.traffic-policy: invalid value "nearest": use "cluster" or "local"'),
        ({"shoal.mesh.traffic-policy": "local", "shoal.mesh.health-port": "99999"},
         'label shoal.mesh.health-port: invalid value "99999": use a port number between 1 '
         "and 65535"),
        ({"shoal.mesh.health-port": "10256"},
         "label shoal.mesh.health-port needs shoal.mesh.traffic-policy=local"),
        ({"shoal.mesh.traffic-policy": "local", "shoal.mesh.health-port": "8080"},
         "label shoal.mesh.health-port: port 8080 is also a published port of this service "
         "(8080/tcp)"),
        ({"shoal.mesh.proxy-protocol": "8080/sctp,x"},
         "label shoal.mesh.proxy-protocol: invalid item(s) '8080/sctp', 'x'"),
    ],
)
def test_bad_labels_are_refused_with_a_clear_error(labels: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_service_spec(spec(labels, (8080, "tcp")))
    assert message in err.value.message
    assert err.value.message.startswith("rpc error: code = InvalidArgument desc = ")


def test_health_port_clashes_across_services() -> None:
    mine = spec(LOCAL, (8080, "tcp"))
    ports = ports_of(mine)
    check_mesh_ports("s1", mine, ports, [service("s1", "web", LOCAL, (8080, "tcp"))])  # itself
    check_mesh_ports("s1", mine, ports, [service("s2", "dns", {}, (10256, "udp"))])
    with pytest.raises(InvalidArgument, match=r"port 10256 is already published by service "
                                              r"db \(10256/tcp\)"):
        check_mesh_ports("s1", mine, ports, [service("s2", "db", {}, (10256, "tcp"))])
    with pytest.raises(InvalidArgument, match="port 10256 is already the health port of "
                                              "service api"):
        check_mesh_ports("s1", mine, ports, [service("s2", "api", LOCAL, (9090, "tcp"))])
    plain = spec({}, (10256, "tcp"))
    with pytest.raises(InvalidArgument, match=r"published port 10256/tcp is already the health "
                                              r"port of service api"):
        check_mesh_ports("s1", plain, ports_of(plain), [service("s2", "api", LOCAL,
                                                                (9090, "tcp"))])


def test_workers_get_the_policy_health_port_proxy_flag_and_name() -> None:
    labels = {**LOCAL, "shoal.mesh.proxy-protocol": "8080/tcp"}
    sent = published_ports([service("s1", "web", labels, (8080, "tcp"), (53, "udp")),
                            service("s2", "api", {"shoal.mesh.traffic-policy": "bogus"},
                                    (9090, "tcp"))])
    assert sent == [
        PublishedPort("s1", "tcp", 8080, 80, "ingress", "local", 10256, True, "web"),
        PublishedPort("s2", "tcp", 9090, 80, "ingress", "cluster", 0, False, "api"),
        PublishedPort("s1", "udp", 53, 80, "ingress", "local", 10256, False, "web"),
    ]
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(sent), type=list[PublishedPort])
    assert port_spec(wire[0]) == PortSpec("s1", "tcp", 8080, 80, "ingress", True, "local",
                                          10256, "web")
    feed = PortFeed()
    feed.set(wire)
    assert [p.policy for p in feed.ports()] == ["local", "cluster", "local"]


def test_an_older_managers_five_field_port_still_decodes() -> None:
    old = msgspec.msgpack.encode([["s1", "tcp", 8080, 80, "ingress"]])
    (port,) = msgspec.msgpack.decode(old, type=list[PublishedPort])
    assert port_spec(port) == PortSpec("s1", "tcp", 8080, 80, "ingress")
