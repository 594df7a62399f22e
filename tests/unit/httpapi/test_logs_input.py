"""Bad log query values are refused with 400 before anything is streamed."""

from __future__ import annotations

from tests.unit.httpapi.conftest import Api


async def test_bad_since_and_tail_are_refused(api: Api) -> None:
    spec = {"Name": "logs", "TaskTemplate": {"ContainerSpec": {"Image": "shoal",
                                                               "Args": ["whoami"]}}}
    sid = (await api.call("POST", "/services/create", spec, expect=201))["ID"]
    body = await api.call("GET", f"/services/{sid}/logs", expect=400, stdout="1", since="true")
    assert body["message"] == "invalid since value 'true'"
    body = await api.call("GET", f"/services/{sid}/logs", expect=400, stdout="1", tail="x")
    assert body["message"] == "invalid tail value 'x'"
    # a well-formed request still streams (nothing logged yet: an empty stream)
    await api.call("GET", f"/services/{sid}/logs", stdout="1", since="1700000000.5")
