"""Registry token auth for real (issue 11): distribution's `docker-registry` with `auth: token`
on loopback, a token server (shoal.lab.tokenauth) as its realm, skopeo pushing with
credentials and an ImageStore pulling through the Bearer challenge -> token -> retry flow."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shoal.images import ImagePullError, ImageStore, RegistryAuth
from shoal.lab import images as test_images
from shoal.lab import registry
from shoal.lab.tokenauth import TokenServer, TokenSigner

pytestmark = pytest.mark.lab

ISSUER = "shoal-token-issuer"
SERVICE = "shoal-registry"
USERS = {"alice": "s3cret"}


@dataclass
class TokenRegistry:
    addr: str
    tokens: TokenServer
    signer: TokenSigner

    def token(self, scope: str, user: str = "alice") -> str:
        """A token from the realm, asked for with `user`'s good password."""
        creds = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
        request = urllib.request.Request(
            f"{self.tokens.realm}?service={SERVICE}&scope={scope}",
            headers={"Authorization": f"Basic {creds}"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            return str(json.load(resp)["token"])

    def manifest_status(self, path: str, token: str) -> int:
        request = urllib.request.Request(
            f"http://{self.addr}/v2/{path}/manifests/1",
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.oci.image.manifest.v1+json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[TokenRegistry]:
    addr = f"127.0.0.1:{_free_port()}"
    signer = TokenSigner(ISSUER)
    with TokenServer(signer, USERS) as tokens:
        auth = registry.TokenAuth(
            tokens.realm, SERVICE, ISSUER, signer.write_bundle(tmp_path / "token-root.pem")
        )
        config = registry.write_config(tmp_path / "registry", addr, token=auth)
        pid = registry.start(config, addr, tmp_path / "registry.log")
        try:
            yield TokenRegistry(addr, tokens, signer)
        finally:
            registry.stop(pid)


async def test_registry_token_auth(token_registry: TokenRegistry, tmp_path: Path) -> None:
    addr = token_registry.addr
    ref = f"{addr}/private/whoami:1"
    argv = test_images.push_argv("whoami", ref)
    subprocess.run([*argv[:3], "--dest-creds", "alice:s3cret", *argv[3:]], check=True)
    push_grant = {"type": "repository", "name": "private/whoami", "actions": ["pull", "push"]}
    assert ("alice", [push_grant]) in token_registry.tokens.issued

    store = ImageStore(tmp_path / "images", insecure_registries=[addr])
    # anonymous: the realm hands out a token granting nothing, the registry answers
    # insufficient_scope, and dockerd words that as Docker Hub's private-repo refusal
    with pytest.raises(ImagePullError) as anonymous:
        await store.pull(ref)
    assert str(anonymous.value) == (
        f"pull access denied for {addr}/private/whoami, repository does not exist or may "
        "require 'docker login': denied: requested access to the resource is denied"
    )
    assert ("", []) in token_registry.tokens.issued
    refused = token_registry.tokens.refused
    with pytest.raises(ImagePullError) as wrong:
        await store.pull(ref, RegistryAuth(username="alice", password="wrong"))
    manifest = f"https://{addr}/v2/private/whoami/manifests/1"
    assert str(wrong.value) == f'Head "{manifest}": unauthorized: authentication required'
    assert token_registry.tokens.refused > refused  # the realm, not the registry, said no
    assert store.images() == []

    image = await store.pull(ref, RegistryAuth(username="alice", password="s3cret"))
    assert image.repo_tags == (ref,)
    assert (image.rootfs / "www/cgi-bin/index.cgi").exists()
    pull_grant = {"type": "repository", "name": "private/whoami", "actions": ["pull"]}
    assert ("alice", [pull_grant]) in token_registry.tokens.issued
    assert list((tmp_path / "images" / "tmp").iterdir()) == []  # the authfile is gone too


async def test_registry_token_as_registrytoken(
    token_registry: TokenRegistry, tmp_path: Path
) -> None:
    """X-Registry-Auth's `registrytoken`: a bearer token got elsewhere, sent as is."""
    addr = token_registry.addr
    test_images.push("whoami", f"{addr}/private/whoami:1", creds="alice:s3cret")
    store = ImageStore(tmp_path / "images", insecure_registries=[addr])
    other = token_registry.token("repository:other/app:pull")
    with pytest.raises(ImagePullError, match="pull access denied for"):
        await store.pull(f"{addr}/private/whoami:1", RegistryAuth(registrytoken=other))
    token = token_registry.token("repository:private/whoami:pull")
    image = await store.pull(f"{addr}/private/whoami:1", RegistryAuth(registrytoken=token))
    assert image.repo_tags == (f"{addr}/private/whoami:1",)


def test_registry_verifies_token_signature_issuer_audience(
    token_registry: TokenRegistry,
) -> None:
    """The registry really checks the JWT: a token from another key, issuer or service is
    refused where the realm's own token for the same scope is accepted."""
    addr = token_registry.addr
    test_images.push("whoami", f"{addr}/private/whoami:1", creds="alice:s3cret")
    access = [{"type": "repository", "name": "private/whoami", "actions": ["pull"]}]
    now = int(time.time())
    good = token_registry.token("repository:private/whoami:pull")
    assert token_registry.manifest_status("private/whoami", good) == 200
    forged = TokenSigner(ISSUER).sign("alice", SERVICE, access, now)  # self-signed, untrusted
    assert token_registry.manifest_status("private/whoami", forged) == 401
    other_issuer = TokenSigner("someone-else", key=token_registry.signer.key,
                               cert=token_registry.signer.cert)  # fmt: skip
    untrusted_issuer = other_issuer.sign("alice", SERVICE, access, now)
    assert token_registry.manifest_status("private/whoami", untrusted_issuer) == 401
    wrong_audience = token_registry.signer.sign("alice", "another-registry", access, now)
    assert token_registry.manifest_status("private/whoami", wrong_audience) == 401
    expired = token_registry.signer.sign("alice", SERVICE, access, now - 3600)
    assert token_registry.manifest_status("private/whoami", expired) == 401
