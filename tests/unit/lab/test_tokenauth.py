"""The lab's registry token server: scope parsing, the grant policy, the JWT it signs (checked
the way distribution's verifier reads it) and its answers on loopback."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from shoal.images.reference import parse_reference
from shoal.images.tools import ToolError, pull_error
from shoal.lab.tokenauth import TokenServer, TokenSigner, grant, parse_scope


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _verified(token: str, roots: list[x509.Certificate]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) once the ES256 signature checks against the x5c leaf, a trusted root."""
    head, body, sig = token.split(".")
    header = json.loads(_unb64(head))
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert leaf in roots
    raw = _unb64(sig)
    assert len(raw) == 64  # JWS ES256 is r||s, 32 bytes each, not DER
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    return header, json.loads(_unb64(body))


def test_parse_scope_splits_type_and_actions_off_the_ends() -> None:
    assert parse_scope("repository:private/app:pull,push") == (
        "repository",
        "private/app",
        ["pull", "push"],
    )
    assert parse_scope("repository:host:5000/app:pull") == ("repository", "host:5000/app", ["pull"])
    assert parse_scope("registry:catalog:*") == ("registry", "catalog", ["*"])
    assert parse_scope("nonsense") is None


def test_grant_gives_users_what_they_asked_among_pull_push_and_anonymous_nothing() -> None:
    asked = ["repository:a/b:pull", "repository:c/d:push,delete", "registry:catalog:*"]
    assert grant(asked, known_user=True) == [
        {"type": "repository", "name": "a/b", "actions": ["pull"]},
        {"type": "repository", "name": "c/d", "actions": ["push"]},
    ]
    assert grant(["repository:a/b:*"], known_user=True)[0]["actions"] == ["pull", "push"]
    assert grant(asked, known_user=False) == []


def test_signed_token_carries_the_claims_distribution_checks() -> None:
    signer = TokenSigner.generate("issuer-x")
    access = [{"type": "repository", "name": "a/b", "actions": ["pull"]}]
    header, claims = _verified(signer.sign("alice", "reg", access, now=1_000_000), [signer.cert])
    assert header["alg"] == "ES256" and header["typ"] == "JWT"
    assert claims["iss"] == "issuer-x" and claims["sub"] == "alice" and claims["aud"] == "reg"
    assert claims["iat"] == 1_000_000 and claims["nbf"] <= 1_000_000 < claims["exp"]
    assert claims["access"] == access and len(claims["jti"]) == 32
    other = TokenSigner.generate("issuer-x")
    with pytest.raises(AssertionError):
        _verified(other.sign("alice", "reg", access, now=1), [signer.cert])


def _get(url: str, creds: str = "") -> tuple[int, dict[str, Any]]:
    headers = (
        {"Authorization": "Basic " + base64.b64encode(creds.encode()).decode()} if creds else {}
    )
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return int(r.status), json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_server_answers_tokens_and_refuses_bad_credentials() -> None:
    signer = TokenSigner.generate("iss")
    with TokenServer(signer, {"alice": "pw"}) as server:
        assert server.realm.startswith("http://127.0.0.1:")
        url = f"{server.realm}?service=reg&scope=repository:a/b:pull,push"
        code, body = _get(url, "alice:pw")
        assert code == 200 and body["token"] == body["access_token"]
        assert body["expires_in"] == 300 and body["issued_at"].endswith("Z")
        claims = _verified(body["token"], [signer.cert])[1]
        assert claims["access"] == [
            {"type": "repository", "name": "a/b", "actions": ["pull", "push"]}
        ]
        code, body = _get(url)
        assert code == 200 and _verified(body["token"], [signer.cert])[1]["access"] == []
        for creds in ("alice:nope", "bob:pw", "alice"):
            code, body = _get(url, creds)
            assert code == 401 and body["errors"][0]["code"] == "UNAUTHORIZED"
        assert server.refused == 3
        assert _get(server.realm.replace("/token", "/other"))[0] == 404


def test_a_registry_error_list_is_worded_by_its_first_error() -> None:
    stderr = (
        'time="t" level=fatal msg="reading manifest 1 in r:1/p/w: errors:\\n'
        "denied: requested access to the resource is denied\\n"
        'unauthorized: authentication required\\n"'
    )
    error = pull_error(parse_reference("r:1/p/w:1"), ToolError(["skopeo"], 1, stderr), False)
    assert str(error) == (
        "pull access denied for r:1/p/w, repository does not exist or may require "
        "'docker login': denied: requested access to the resource is denied"
    )
