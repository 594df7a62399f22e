"""/secrets and /configs through the API of an in-process node."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.unit.httpapi.conftest import Api, filters


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def with_refs(secrets: list[Any] | None = None, configs: list[Any] | None = None) -> Any:
    container: dict[str, Any] = {"Image": "shoal", "Args": ["whoami"]}
    if secrets is not None:
        container["Secrets"] = secrets
    if configs is not None:
        container["Configs"] = configs
    return {"Name": "web", "TaskTemplate": {"ContainerSpec": container}}


def file(name: str) -> dict[str, Any]:
    return {"Name": name, "UID": "0", "GID": "0", "Mode": 292}


async def test_secret_data_is_never_returned(api: Api) -> None:
    body = {"Name": "db_pass", "Labels": {"a": "1"}, "Data": b64(b"hunter2")}
    created = await api.call("POST", "/secrets/create", body, expect=201)
    assert set(created) == {"ID"}
    sid = created["ID"]
    for path in (f"/secrets/{sid}", "/secrets/db_pass", f"/secrets/{sid[:5]}"):
        secret = await api.get(path)
        assert secret["ID"] == sid and secret["Spec"] == {"Name": "db_pass", "Labels": {"a": "1"}}
    listed = await api.get("/secrets")
    assert listed == [await api.get(f"/secrets/{sid}")]
    assert "hunter2" not in repr(listed) and b64(b"hunter2") not in repr(listed)
    # but it is stored, in the replicated state
    stored = api.daemon.store.view().get("secret", sid)  # type: ignore[union-attr]
    assert base64.b64decode(stored.spec.data) == b"hunter2"


async def test_filters(api: Api) -> None:
    for name, label in (("db_pass", "x=1"), ("db_user", "x=2"), ("api_key", "y=1")):
        key, _, value = label.partition("=")
        body = {"Name": name, "Labels": {key: value}, "Data": b64(b"v")}
        await api.call("POST", "/secrets/create", body, expect=201)

    async def names(flt: Any) -> list[str]:
        return [s["Spec"]["Name"] for s in await api.get("/secrets", filters=flt)]

    assert await names(filters(name="db_pass")) == ["db_pass"]
    assert await names(filters(name="db")) == []  # exact, like swarmkit's
    assert await names(filters(names="db")) == ["db_pass", "db_user"]
    assert await names({"label": ["x"]}) == ["db_pass", "db_user"]
    assert await names({"label": ["x=2"]}) == ["db_user"]
    sid = (await api.get("/secrets/api_key"))["ID"]
    assert await names(filters(id=sid[:8])) == ["api_key"]
    err = await api.call("GET", "/secrets", expect=400, filters=filters(bogus="1"))
    assert err["message"] == "invalid filter 'bogus'"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Name": "", "Data": b64(b"x")}, "name must be provided"),
        ({"Name": "-x", "Data": b64(b"x")}, "invalid name, only 64 [a-zA-Z0-9-_.] characters"),
        ({"Name": "x" * 65, "Data": b64(b"x")}, "invalid name"),
        ({"Name": "x"}, "secret data must be larger than 0 and less than 512000 bytes"),
        ({"Name": "x", "Data": b64(b"a" * 512000)}, "less than 512000 bytes"),
        ({"Name": "x", "Data": b64(b" \n ")}, "must contain non white space bytes"),
        ({"Name": "x", "Data": "not base64!"}, "illegal base64 data"),
        ({"Name": "x", "Data": b64(b"x"), "Driver": {"Name": "vault"}}, "secret drivers"),
        ({"Name": "x", "Data": 12}, "Expected `str | null`"),
    ],
)
async def test_bad_secrets_are_refused(api: Api, body: Any, message: str) -> None:
    err = await api.call("POST", "/secrets/create", body, expect=400)
    assert message in err["message"]
    assert await api.get("/secrets") == []


async def test_only_labels_may_change(api: Api) -> None:
    body = {"Name": "s", "Data": b64(b"one")}
    sid = (await api.call("POST", "/secrets/create", body, expect=201))["ID"]
    version = (await api.get(f"/secrets/{sid}"))["Version"]["Index"]
    # the stack deploy form: the same data again, new labels
    again = {**body, "Labels": {"com.docker.stack.namespace": "shop"}}
    await api.call("POST", f"/secrets/{sid}/update", again, version=str(version))
    secret = await api.get(f"/secrets/{sid}")
    assert secret["Spec"]["Labels"] == {"com.docker.stack.namespace": "shop"}
    version = secret["Version"]["Index"]
    for bad in ({"Name": "s", "Data": b64(b"two")}, {"Name": "t"}):
        err = await api.call(
            "POST", f"/secrets/{sid}/update", bad, expect=400, version=str(version)
        )
        assert err["message"].endswith("only updates to Labels are allowed")
    err = await api.call(
        "POST", f"/secrets/{sid}/update", {"Name": "s"}, expect=409, version=str(version - 1)
    )
    assert "update out of sequence" in err["message"]
    err = await api.call("POST", f"/secrets/{sid}/update", {"Name": "s"}, expect=400)
    assert "version is required" in err["message"]
    err = await api.call("POST", "/secrets/nosuch/update", {"Name": "s"}, expect=404, version="1")
    assert err["message"] == "secret nosuch not found"


async def test_configs_return_their_data(api: Api) -> None:
    body = {"Name": "app.yml", "Labels": {}, "Data": b64(b"a: 1\n")}
    cid = (await api.call("POST", "/configs/create", body, expect=201))["ID"]
    config = await api.get("/configs/app.yml")
    assert config["ID"] == cid and config["Spec"]["Data"] == b64(b"a: 1\n")
    assert [c["ID"] for c in await api.get("/configs")] == [cid]
    # white space is a valid config; the limit is 1000 KB
    await api.call("POST", "/configs/create", {"Name": "ws", "Data": b64(b"  ")}, expect=201)
    big = {"Name": "big", "Data": b64(b"a" * 1024000)}
    err = await api.call("POST", "/configs/create", big, expect=400)
    assert "config data must be larger than 0 and less than 1024000 bytes" in err["message"]
    await api.call("DELETE", "/configs/ws", expect=204)
    err = await api.call("GET", "/configs/ws", expect=404)
    assert err["message"] == "config ws not found"


async def test_references_from_services(api: Api) -> None:
    sec = (
        await api.call("POST", "/secrets/create", {"Name": "pw", "Data": b64(b"x")}, expect=201)
    )["ID"]
    cfg = (await api.call("POST", "/configs/create", {"Name": "c", "Data": b64(b"x")}, expect=201))[
        "ID"
    ]
    good_secret = {"File": file("pw"), "SecretID": sec, "SecretName": "pw"}
    good_config = {"File": file("/etc/c"), "ConfigID": cfg, "ConfigName": "c"}
    bad_cases = [
        (with_refs([{**good_secret, "SecretID": "nosuch"}]), "secret not found: pw"),
        (with_refs([{**good_secret, "SecretName": "other"}]), "secret not found: other"),
        (with_refs([{"SecretID": sec, "SecretName": "pw"}]), "no target provided"),
        (with_refs(["pw"]), "Expected `object`, got `str`"),
        (with_refs([good_secret, {**good_secret}]), "have a conflicting target: 'pw'"),
        (with_refs(configs=[{**good_config, "ConfigID": "x"}]), "config not found: c"),
    ]
    for spec, message in bad_cases:
        err = await api.call("POST", "/services/create", spec, expect=400)
        assert message in err["message"]
    assert await api.get("/services") == []
    runtime_config = {"Runtime": {}, "ConfigID": cfg, "ConfigName": "c"}
    spec = with_refs([good_secret], [good_config, runtime_config])
    await api.call("POST", "/services/create", spec, expect=201)
    err = await api.call("DELETE", "/secrets/pw", expect=400)
    assert err["message"].endswith("secret 'pw' is in use by the following service: web")
    err = await api.call("DELETE", f"/configs/{cfg}", expect=400)
    assert err["message"].endswith("config 'c' is in use by the following service: web")
    await api.call("DELETE", "/services/web")
    await api.call("DELETE", "/secrets/pw", expect=204)
    await api.call("DELETE", "/configs/c", expect=204)
    assert await api.get("/secrets") == [] and await api.get("/configs") == []


async def test_secrets_need_a_manager(api: Api) -> None:
    await api.call("POST", "/swarm/leave", force="1")
    for method, path in (("GET", "/secrets"), ("GET", "/configs"), ("GET", "/secrets/x")):
        err = await api.call(method, path, expect=503)
        assert "not a swarm manager" in err["message"]
