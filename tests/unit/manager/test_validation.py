"""Service spec validation, defaults and published-port allocation."""

from __future__ import annotations

import pytest

from shoal.api.codec import decode_body
from shoal.api.types import EndpointPortConfig, EndpointSpec, Service, ServiceSpec
from shoal.errors import InvalidArgument
from shoal.manager.allocator.ports import allocate_ports
from shoal.manager.controlapi.validation import validate_service_spec, with_defaults

BASE = b'{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"busybox"}}'


def spec(extra: str = "") -> ServiceSpec:
    return decode_body(BASE + (b"," + extra.encode() if extra else b"") + b"}", ServiceSpec)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('"EndpointSpec":{"Ports":[{"TargetPort":0,"PublishedPort":80}]}', "target port"),
        ('"EndpointSpec":{"Ports":[{"TargetPort":80,"PublishedPort":70000}]}', "published port"),
        ('"EndpointSpec":{"Ports":[{"Protocol":"sctp","TargetPort":80}]}', "sctp"),
        ('"Mode":{"Replicated":{"Replicas":-1}}', "negative"),
        ('"Mode":{"Replicated":{},"Global":{}}', "only one"),
        ('"UpdateConfig":{"Order":"sideways"}', "order"),
    ],
)
def test_bad_specs_are_refused(extra: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_service_spec(spec(extra))


def test_duplicate_published_ports_refused() -> None:
    bad = spec(
        '"EndpointSpec":{"Ports":[{"TargetPort":80,"PublishedPort":8080},'
        '{"TargetPort":81,"PublishedPort":8080}]}'
    )
    with pytest.raises(InvalidArgument, match="duplicate"):
        validate_service_spec(bad)


def test_wrong_types_and_unknown_fields_are_clear_errors() -> None:
    with pytest.raises(InvalidArgument, match=r"\$\.Name"):
        decode_body(b'{"Name": 5}', ServiceSpec)
    with pytest.raises(InvalidArgument, match="unknown field `Bogus`"):
        decode_body(b'{"Name": "x", "Bogus": 1}', ServiceSpec)
    with pytest.raises(InvalidArgument, match="malformed JSON"):
        decode_body(b'{"Name": ', ServiceSpec)


def test_keys_match_case_insensitively_like_go() -> None:
    s = decode_body(
        b'{"name":"x","mode":{"replicated":{"replicas":2}},"labels":{"aB":"1"}}', ServiceSpec
    )
    assert s.mode is not None and s.mode.replicated is not None
    assert s.mode.replicated.replicas == 2
    assert s.labels == {"aB": "1"}  # map keys are data, left alone


def test_defaults_are_docker_defaults() -> None:
    full = with_defaults(spec('"EndpointSpec":{"Ports":[{"TargetPort":80,"PublishedPort":8080}]}'))
    assert full.mode is not None and full.mode.replicated is not None
    assert full.mode.replicated.replicas == 1
    assert full.endpoint_spec is not None and full.endpoint_spec.ports is not None
    port = full.endpoint_spec.ports[0]
    assert (port.protocol, port.publish_mode) == ("tcp", "ingress")
    rp = full.task_template.restart_policy
    assert rp is not None and rp.condition == "any" and rp.delay == 5_000_000_000


def _svc(sid: str, name: str, *ports: tuple[int, str, str]) -> Service:
    return Service(
        id=sid,
        spec=ServiceSpec(name=name),
        endpoint=__import__("shoal.api.types", fromlist=["Endpoint"]).Endpoint(
            spec=EndpointSpec(),
            ports=[
                EndpointPortConfig(protocol=p, target_port=80, published_port=n, publish_mode=m)
                for n, p, m in ports
            ],  # type: ignore[arg-type]
        ),
    )


def test_port_in_use_by_another_service() -> None:
    web = _svc("w1", "web", (8080, "tcp", "ingress"))
    with pytest.raises(InvalidArgument, match="port '8080' is already in use by service 'web'"):
        allocate_ports(
            "new", [EndpointPortConfig(protocol="tcp", target_port=80, published_port=8080)], [web]
        )
    # same number over udp is another port
    out = allocate_ports(
        "new", [EndpointPortConfig(protocol="udp", target_port=80, published_port=8080)], [web]
    )
    assert out[0].published_port == 8080


def test_dynamic_port_is_allocated_from_the_range() -> None:
    other = _svc("o", "o", (30000, "tcp", "ingress"))
    out = allocate_ports("new", [EndpointPortConfig(target_port=80)], [other])
    assert out[0].published_port == 30001
