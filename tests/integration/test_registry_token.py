"""Registry token auth for real (issue 11): distribution's `docker-registry` with `auth: token`
on loopback, a token server (shoal.lab.tokenauth) as its realm, skopeo pushing with
credentials and an ImageStore pulling through the Bearer challenge -> token -> retry flow;
then the same in a lab: the real docker CLI on h1 pulling from a token-auth registry on the
registry host, and a service created `--with-registry-auth` whose node pulls with it."""

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
from typing import Any

import pytest

from shoal.images import ImagePullError, ImageStore, RegistryAuth
from shoal.images.login import RegistryLoginError, login
from shoal.lab import Lab, registry
from shoal.lab import images as test_images
from shoal.lab.layout import CLIENT
from shoal.lab.tokenauth import TokenServer, TokenSigner
from tests.integration.labtools import running
from tests.polling import until

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
    signer = TokenSigner.generate(ISSUER)
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

    # `docker login` (POST /auth): the same check, nothing kept on the daemon's side
    assert await login(store, RegistryAuth(username="alice", password="s3cret",
                                           serveraddress=addr)) == addr  # fmt: skip
    with pytest.raises(RegistryLoginError) as refused_login:
        await login(store, RegistryAuth(username="alice", password="nope", serveraddress=addr))
    assert refused_login.value.message == (
        f"login attempt to http://{addr}/v2/ failed with status: 401 Unauthorized"
    )
    assert list((tmp_path / "images" / "tmp").iterdir()) == []


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
    stranger = TokenSigner.generate(ISSUER)  # same issuer name, a certificate nobody trusts
    forged = stranger.sign("alice", SERVICE, access, now)
    assert token_registry.manifest_status("private/whoami", forged) == 401
    other_issuer = TokenSigner(
        "someone-else", token_registry.signer.key, token_registry.signer.cert
    )
    untrusted_issuer = other_issuer.sign("alice", SERVICE, access, now)
    assert token_registry.manifest_status("private/whoami", untrusted_issuer) == 401
    wrong_audience = token_registry.signer.sign("alice", "another-registry", access, now)
    assert token_registry.manifest_status("private/whoami", wrong_audience) == 401
    expired = token_registry.signer.sign("alice", SERVICE, access, now - 3600)
    assert token_registry.manifest_status("private/whoami", expired) == 401


def _on_h1(lab: Lab, *argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = lab.exec("h1", list(argv), capture=True, timeout=120)
    assert (proc.returncode == 0) == ok, f"{argv}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _tasks(lab: Lab, service: str) -> list[dict[str, Any]]:
    return list(lab.client("h1").get("/tasks", params={"filters": {"service": {service: True}}}))


def test_lab_docker_pull_and_service_with_registry_auth(lab1: Lab, tmp_path: Path) -> None:
    pids = registry.start_lab_token_registry(lab1.layout, USERS)
    try:
        ref = f"{registry.LAB_TOKEN_REGISTRY}/private/whoami:1"
        test_images.push("whoami", ref, netns=lab1.layout.netns(CLIENT), creds="alice:s3cret")
        denied = _on_h1(lab1, "docker", "pull", ref, ok=False).stderr
        assert (
            f"pull access denied for {registry.LAB_TOKEN_REGISTRY}/private/whoami, repository does "
            "not exist or may require 'docker login': denied: requested access to the resource "
            "is denied"
        ) in denied
        # `docker login`: the daemon checks (POST /auth), the CLI keeps them in config.json
        config = tmp_path / "docker"
        login = ("env", f"DOCKER_CONFIG={config}")
        cmd = (*login, "docker", "login", "-u", "alice", "--password-stdin",
               registry.LAB_TOKEN_REGISTRY)  # fmt: skip
        bad = lab1.exec("h1", list(cmd), capture=True, timeout=60, input="wrong\n")
        assert bad.returncode != 0
        assert (
            f"login attempt to http://{registry.LAB_TOKEN_REGISTRY}/v2/ failed with status: "
            "401 Unauthorized"
        ) in bad.stderr
        good = lab1.exec("h1", list(cmd), capture=True, timeout=60, input="s3cret\n")
        assert good.returncode == 0 and "Login Succeeded" in good.stdout, good.stderr
        stored = json.loads((config / "config.json").read_text())["auths"]
        assert base64.b64decode(stored[registry.LAB_TOKEN_REGISTRY]["auth"]) == b"alice:s3cret"
        pulled = _on_h1(lab1, *login, "docker", "pull", ref).stdout
        assert f"Status: Downloaded newer image for {ref}" in pulled
        _on_h1(lab1, "docker", "image", "rm", ref)

        # without --with-registry-auth the node has nothing to pull with
        _on_h1(lab1, *login, "docker", "service", "create", "--detach", "--name", "noauth",
               "--restart-condition", "none", ref)  # fmt: skip
        until(lambda: any(t["Status"]["State"] == "rejected" for t in _tasks(lab1, "noauth")),
              timeout=60, what="the task without registry auth rejected")  # fmt: skip
        ps = _on_h1(lab1, "docker", "service", "ps", "--no-trunc", "noauth").stdout
        assert "pull access denied" in ps
        realm_log = registry.lab_token_dir(lab1.layout) / "tokenauth.log"
        before = len(realm_log.read_text())
        _on_h1(lab1, *login, "docker", "service", "create", "--detach", "--init",
               "--with-registry-auth", "--name", "withauth", ref)  # fmt: skip
        until(lambda: running(lab1, "withauth"), timeout=60, what="withauth task running")
        grant = [{"type": "repository", "name": "private/whoami", "actions": ["pull"]}]
        # the node's pull asked the realm as alice
        assert f"issued alice {json.dumps(grant)}" in realm_log.read_text()[before:]
    finally:
        for pid in reversed(pids):
            registry.stop(pid)
