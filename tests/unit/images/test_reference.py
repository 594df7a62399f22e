"""Image references: docker's normalisation (docker.io/library/, :latest), digests, refusals;
skopeo's failures in Docker's words; X-Registry-Auth decoding."""

from __future__ import annotations

import base64
import json

import pytest

from shoal.errors import InvalidArgument
from shoal.images import RegistryAuth, decode_registry_auth, parse_reference
from shoal.images.tools import ToolError, pull_error

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("198.18.0.3:5000/web", "198.18.0.3:5000/web:latest", "198.18.0.3:5000/web:latest"),
        ("localhost/a/b:x", "localhost/a/b:x", "localhost/a/b:x"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"reg.io:443/x:t@{DIGEST}", f"reg.io:443/x@{DIGEST}", f"reg.io:443/x@{DIGEST}"),
    ],
)
def test_normalises_like_docker(text: str, canonical: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert ref.canonical == canonical
    assert ref.familiar == familiar


def test_tag_and_digest_keeps_both() -> None:
    ref = parse_reference(f"198.18.0.3:5000/web:1@{DIGEST}")
    assert (ref.registry, ref.path, ref.tag, ref.digest) == ("198.18.0.3:5000", "web", "1", DIGEST)


@pytest.mark.parametrize(
    "text",
    ["", " busybox", "bu sy", "busybox:", "busybox@sha256:12", "a//b", "-x", "x:t@y", "x:-t"],
)
def test_refuses_bad_references(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        parse_reference(text)


def test_uppercase_names_say_why() -> None:
    with pytest.raises(
        InvalidArgument, match=r"repository name \(library/Busybox\) must be lowercase"
    ):
        parse_reference("Busybox")


def _fail(message: str) -> ToolError:
    return ToolError(["skopeo"], 1, f'time="2026-12-02T00:00:00Z" level=fatal msg="{message}"\n')


def test_errors_in_dockers_words() -> None:
    ref = parse_reference("198.18.0.3:5000/web:nope")
    unknown = _fail(
        "reading manifest nope in 198.18.0.3:5000/web: manifest unknown: manifest unknown"
    )
    assert pull_error(ref, unknown, False).message == (
        "manifest for 198.18.0.3:5000/web:nope not found: manifest unknown: manifest unknown"
    )
    denied = _fail(
        "reading manifest latest in docker.io/library/x: requested access to the resource is denied"
    )
    assert pull_error(parse_reference("x"), denied, False).message == (
        "pull access denied for x, repository does not exist or may require 'docker login': "
        "denied: requested access to the resource is denied"
    )
    unauthorized = _fail(
        "reading manifest nope in 198.18.0.3:5000/web: unauthorized: authentication required"
    )
    assert pull_error(ref, unauthorized, False).message.endswith("no basic auth credentials")
    assert pull_error(ref, unauthorized, True).message.endswith(
        "unauthorized: authentication required"
    )
    refused = _fail(
        "pinging container registry 198.18.0.3:5000: Get ...: "
        "dial tcp 198.18.0.3:5000: connect: connection refused"
    )
    assert pull_error(ref, refused, False).message == (
        'Get "https://198.18.0.3:5000/v2/": dial tcp 198.18.0.3:5000: connect: connection refused'
    )


def test_registry_auth_header_is_base64url_json() -> None:
    body = json.dumps({"username": "u", "password": "p?>", "serveraddress": "r:5000"}).encode()
    header = base64.urlsafe_b64encode(body).decode().rstrip("=")
    assert decode_registry_auth(header) == RegistryAuth(
        username="u", password="p?>", serveraddress="r:5000"
    )
    assert decode_registry_auth(None) is None
    assert decode_registry_auth("e30=") is None  # "{}" as the CLI sends without credentials
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        decode_registry_auth("%%%")
