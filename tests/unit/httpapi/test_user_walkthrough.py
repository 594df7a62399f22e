"""What a swarm user met on a real lab (session 12, docs/design/user-walkthrough.md),
replayed against an in-process node: the bodies the docker CLI sends, dockerd's answers."""

from __future__ import annotations

import re
from typing import Any

from tests.unit.httpapi.conftest import Api


def spec(name: str = "", **task: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "TaskTemplate": {"ContainerSpec": {"Image": "shoal", "Args": ["whoami"]}, **task},
        "Mode": {"Replicated": {"Replicas": 1}},
    }
    if name:
        body["Name"] = name
    return body


async def test_a_service_created_without_a_name_gets_dockers_random_one(api: Api) -> None:
    # `docker service create IMAGE` sends no Name; dockerd makes up `adjective_surname`
    first = await api.call("POST", "/services/create", spec(), expect=201)
    second = await api.call("POST", "/services/create", spec(), expect=201)
    names = [(await api.get(f"/services/{c['ID']}"))["Spec"]["Name"] for c in (first, second)]
    for name in names:
        assert re.fullmatch(r"[a-z]+_[a-z]+", name), name
    assert (await api.get(f"/services/{names[0]}"))["ID"] == first["ID"]
