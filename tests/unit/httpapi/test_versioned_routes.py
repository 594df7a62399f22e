"""Versioned paths: the current version has literal routes (no regex scan), other versions
in range reach the same handlers through the variable route, versions out of range are
refused; one metrics label per route whichever form served it."""

from __future__ import annotations

import re

from aiohttp import web

from shoal.httpapi.app import add_all_routes
from shoal.httpapi.common import API_VERSION
from tests.unit.httpapi.conftest import Api


async def test_every_form_of_a_path_reaches_the_same_handler(api: Api) -> None:
    name = "versioned"
    created = await api.client.post(
        f"/v{API_VERSION}/secrets/create", json={"Name": name, "Data": "eA=="}
    )
    assert created.status == 201
    sid = (await created.json())["ID"]
    for prefix in ("", f"/v{API_VERSION}", "/v1.41", "/v1.24"):
        resp = await api.client.get(f"{prefix}/secrets/{sid}")
        assert resp.status == 200, prefix
        assert (await resp.json())["Spec"]["Name"] == name
    too_new = await api.client.get("/v1.99/secrets")
    assert too_new.status == 400 and "too new" in (await too_new.json())["message"]
    too_old = await api.client.get("/v1.12/secrets")
    assert too_old.status == 400 and "too old" in (await too_old.json())["message"]


def test_the_current_version_routes_are_literal_and_mirror_the_unversioned_ones() -> None:
    router = web.UrlDispatcher()
    add_all_routes(router)
    canon = [r.canonical for r in router.resources()]
    literal = f"/v{API_VERSION}"
    plain = {c for c in canon if not re.match(r"/v(\{|\d+\.\d+/)", c)}
    assert {c.removeprefix(literal) for c in canon if c.startswith(literal + "/")} == plain
    assert {c.removeprefix("/v{api_version}") for c in canon if c.startswith("/v{")} == plain
