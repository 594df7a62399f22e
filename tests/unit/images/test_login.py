"""`docker login`'s daemon side without a registry: the address it names, and the refusals
that come before any registry is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.errors import InvalidArgument
from shoal.images import ImageStore, RegistryAuth
from shoal.images.login import RegistryLoginError, login, login_registry


def test_login_registry_drops_scheme_and_path_and_names_docker_hub() -> None:
    assert login_registry("https://index.docker.io/v1/") == "docker.io"
    assert login_registry("") == "docker.io"
    assert login_registry("http://198.18.0.3:5001") == "198.18.0.3:5001"
    assert login_registry("registry.example:5000/v2/") == "registry.example:5000"
    for bad in ("https://", "--tls-verify=false", "a b"):
        with pytest.raises(InvalidArgument, match="invalid registry address"):
            login_registry(bad)


async def test_login_refuses_before_contacting_anything(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", allowed_registries=["127.0.0.1:1"])
    with pytest.raises(InvalidArgument, match="a username and a password are required"):
        await login(store, RegistryAuth(serveraddress="127.0.0.1:1"))
    with pytest.raises(RegistryLoginError, match="not in this node's allowed registries"):
        await login(store, RegistryAuth(username="u", password="p", serveraddress="elsewhere:5000"))
    with pytest.raises(RegistryLoginError, match="not in this node's allowed registries"):
        await login(store, RegistryAuth(username="u", password="p"))  # Docker Hub
