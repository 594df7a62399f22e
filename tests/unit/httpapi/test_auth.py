"""POST /auth (`docker login`) refusals that come before any registry is contacted (the
registry side is tests/integration/test_registry_token.py)."""

from __future__ import annotations

from tests.unit.httpapi.conftest import Api, V


async def test_auth_refuses_bad_bodies_and_registries_it_may_not_contact(api: Api) -> None:
    resp = await api.client.post(V + "/auth", data=b"{not json")
    assert resp.status == 400 and "invalid auth configuration" in (await resp.json())["message"]
    no_user = await api.call("POST", "/auth", {"serveraddress": "localhost:1"}, expect=400)
    assert no_user["message"] == "a username and a password are required to log in"
    creds = {"username": "u", "password": "p"}
    elsewhere = {**creds, "serveraddress": "registry.example:5000"}
    refused = await api.call("POST", "/auth", elsewhere, expect=401)
    assert "registry.example:5000 is not in this node's allowed registries" in refused["message"]
    hub = await api.call("POST", "/auth", {**creds, "serveraddress": "https://index.docker.io/v1/"},
                         expect=401)  # fmt: skip
    assert "docker.io is not in this node's allowed registries" in hub["message"]
    bad = await api.call("POST", "/auth", {**creds, "serveraddress": "-x"}, expect=400)
    assert bad["message"] == "invalid registry address '-x'"
