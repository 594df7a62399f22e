"""The real docker CLI's `service create|update` container flags against an in-process node:
what it sends is stored as sent, inspected back unchanged, and bad values are refused with
docker's words, nothing stored."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from shoal import timeouts
from shoal.cli.pretty import service_pretty
from tests.polling import eventually
from tests.unit.httpapi.conftest import Api

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI here")

REGISTRY = "198.18.0.3:5000"


async def docker(api: Api, home: Path, *args: str, ok: bool = True) -> tuple[int, str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DOCKER_HOST": f"tcp://127.0.0.1:{api.client.server.port}",
        "DOCKER_CONFIG": str(home),
        "HOME": str(home),
    }
    proc = await asyncio.create_subprocess_exec(
        "docker", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await timeouts.wait_for(proc.communicate(), 60)
    code = proc.returncode or 0
    if ok:
        assert code == 0, f"docker {' '.join(args)}: {code}\n{out.decode()}\n{err.decode()}"
    return code, out.decode(), err.decode()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "dockercfg"
    home.mkdir()
    auth = base64.b64encode(b"alice:wonderland").decode()
    (home / "config.json").write_text(json.dumps({"auths": {REGISTRY: {"auth": auth}}}))
    return home


async def _inspect(api: Api, home: Path, name: str) -> Any:
    return json.loads((await docker(api, home, "service", "inspect", name))[1])[0]


async def test_create_with_container_flags_stores_what_docker_sends(api: Api, home: Path) -> None:
    pw = base64.b64encode(b"hunter2").decode()
    await api.call("POST", "/secrets/create", {"Name": "pw", "Data": pw}, expect=201)
    await api.call("POST", "/configs/create", {"Name": "cfg", "Data": pw}, expect=201)
    await docker(
        api, home, "service", "create", "-d", "--name", "web", "--no-resolve-image",
        "--with-registry-auth",
        "--mount", "type=tmpfs,target=/tmp,tmpfs-size=1m",
        "--mount", "type=volume,source=data,target=/data,volume-label=a=b,volume-nocopy",
        "--mount", "type=bind,source=/srv,target=/srv,readonly",
        "--secret", "pw", "--config", "source=cfg,target=/etc/cfg,mode=0440",
        "--limit-memory", "32M", "--limit-cpu", "1", "--limit-pids", "20",
        "--reserve-cpu", "0.5", "--reserve-memory", "16M",
        "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD",
        "--sysctl", "net.core.somaxconn=512", "--ulimit", "nofile=64:128",
        "--user", "1000:1000", "--workdir", "/w", "--hostname", "{{.Task.Slot}}",
        "--read-only", "--init", "--entrypoint", "/bin/sh", "--stop-signal", "SIGINT",
        "--stop-grace-period", "2s", "--oom-score-adj", "10",
        f"{REGISTRY}/web:1", "-c", "sleep 1d",
    )  # fmt: skip
    svc = await _inspect(api, home, "web")
    task = svc["Spec"]["TaskTemplate"]
    c = task["ContainerSpec"]
    assert c["Image"] == f"{REGISTRY}/web:1" and c["Command"] == ["/bin/sh"]
    assert c["Args"] == ["-c", "sleep 1d"]
    assert c["User"] == "1000:1000" and c["Dir"] == "/w" and c["Hostname"] == "{{.Task.Slot}}"
    assert c["ReadOnly"] is True and c["Init"] is True and c["StopSignal"] == "SIGINT"
    assert c["StopGracePeriod"] == 2_000_000_000 and c["OomScoreAdj"] == 10
    assert {m["Target"]: m["Type"] for m in c["Mounts"]} == {
        "/tmp": "tmpfs", "/data": "volume", "/srv": "bind"
    }  # fmt: skip
    data = next(m for m in c["Mounts"] if m["Target"] == "/data")
    assert data["VolumeOptions"] == {"NoCopy": True, "Labels": {"a": "b"}, "DriverConfig": {}}
    assert c["Secrets"][0]["SecretName"] == "pw" and c["Secrets"][0]["File"]["Mode"] == 0o444
    assert c["Configs"][0]["File"] == {"Name": "/etc/cfg", "UID": "0", "GID": "0", "Mode": 0o440}
    assert c["CapabilityAdd"] == ["CAP_NET_ADMIN"] and c["CapabilityDrop"] == ["CAP_MKNOD"]
    assert c["Sysctls"] == {"net.core.somaxconn": "512"}
    assert c["Ulimits"] == [{"Name": "nofile", "Soft": 64, "Hard": 128}]
    assert task["Resources"] == {
        "Limits": {"NanoCPUs": 10**9, "MemoryBytes": 32 << 20, "Pids": 20},
        "Reservations": {"NanoCPUs": 5 * 10**8, "MemoryBytes": 16 << 20},
    }
    # the credentials went with the service, and never come back
    stored = api.daemon.store.view().get("service", svc["ID"])  # type: ignore[union-attr]
    auth = json.loads(base64.urlsafe_b64decode(stored.registry_auth + "=="))
    assert auth["username"] == "alice" and auth["password"] == "wonderland"
    assert "RegistryAuth" not in json.dumps(svc) and stored.registry_auth not in json.dumps(svc)

    # an update that changes something else posts the spec back: the container is unchanged
    await docker(api, home, "service", "update", "-d", "--label-add", "x=y", "web")
    again = await _inspect(api, home, "web")
    after = again["Spec"]["TaskTemplate"]["ContainerSpec"]
    # (the docker CLI sorts the mounts by source, then target, on every update)
    assert after["Mounts"] == sorted(c["Mounts"], key=lambda m: (m.get("Source", ""), m["Target"]))
    assert {k: v for k, v in after.items() if k != "Mounts" and v != c.get(k)} == {}
    assert set(c) == set(after)
    assert {k: v for k, v in again["Spec"]["TaskTemplate"].items() if k != "ContainerSpec"} == {
        k: v for k, v in task.items() if k != "ContainerSpec"
    }
    assert again["Spec"]["Labels"] == {"x": "y"}
    pretty = (await docker(api, home, "service", "inspect", "--pretty", "web"))[1]
    later = await _inspect(api, home, "web")
    assert "Mounts:" in pretty and "Secrets:" in pretty and "Memory:\t32MiB" in pretty
    # (the update's "Started: ... ago" depends on when each side looked)
    def lines(text: str) -> list[str]:
        return [line for line in text.strip("\n").splitlines() if " ago" not in line]

    # the update's status may move on between two reads: the CLI's read was between these
    now = datetime.datetime.now(datetime.UTC)
    assert lines(pretty) in (lines(service_pretty(s, now)) for s in (again, later))

    # -add/-rm forms
    await docker(api, home, "service", "update", "-d", "--mount-rm", "/srv", "--secret-rm",
                 "pw", "--limit-memory", "64M", "web")  # fmt: skip
    c = (await _inspect(api, home, "web"))["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert "/srv" not in {m["Target"] for m in c["Mounts"]} and not c.get("Secrets")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--limit-memory", "4M"], "Minimum memory limit allowed is 6MB"),
        (["--limit-memory", "8M", "--reserve-memory", "16M"],
         "Minimum memory limit can not be less than memory reservation limit"),
        (["--mount", "type=bind,target=/x"], "field Source must not be empty"),
        (["--mount", "type=tmpfs,source=a,target=/x"], "field Source must not be specified"),
        (["--mount", "type=volume,target=x"], "must be an absolute path: x"),
        (["--secret", "nope"], "secret not found: nope"),
        (["--config", "nope"], "config not found: nope"),
        (["--cap-add", "FLY"], "unknown capability: 'CAP_FLY'"),
        (["--oom-score-adj", "2000"], "range for oom score adj is [-1000, 1000]"),
    ],
)  # fmt: skip
async def test_bad_values_are_refused_and_nothing_is_stored(
    api: Api, home: Path, flags: list[str], message: str
) -> None:
    code, _out, err = await docker(
        api,
        home,
        "service",
        "create",
        "-d",
        "--name",
        "x",
        "--no-resolve-image",
        *flags,
        "busybox",
        ok=False,
    )
    assert code != 0 and message in err, err
    assert await api.call("GET", "/services") == []


COMPOSE = """
version: "3.8"
services:
  web:
    image: shoal
    command: ["whoami", "--port", "80"]
    secrets:
      - source: pw
        target: db_password
        mode: 0400
    configs: [app]
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 32M}
        reservations: {memory: 16M}
secrets:
  pw:
    file: ./pw.txt
configs:
  app:
    file: ./app.yml
"""


async def test_stack_deploy_secrets_and_configs_reach_the_node(
    api: Api, home: Path, tmp_path: Path
) -> None:
    (tmp_path / "compose.yml").write_text(COMPOSE)
    (tmp_path / "pw.txt").write_text("s3cret")
    (tmp_path / "app.yml").write_text("a: 1\n")
    await docker(api, home, "stack", "deploy", "-c", str(tmp_path / "compose.yml"), "shop")
    svc = await _inspect(api, home, "shop_web")
    task = svc["Spec"]["TaskTemplate"]
    secret = json.loads((await docker(api, home, "secret", "inspect", "shop_pw"))[1])[0]
    config = json.loads((await docker(api, home, "config", "inspect", "shop_app"))[1])[0]
    ref = task["ContainerSpec"]["Secrets"][0]
    assert ref["SecretID"] == secret["ID"] and ref["SecretName"] == "shop_pw"
    assert ref["File"] == {"Name": "db_password", "UID": "0", "GID": "0", "Mode": 0o400}
    assert task["ContainerSpec"]["Configs"][0]["ConfigID"] == config["ID"]
    assert task["Resources"]["Limits"] == {"NanoCPUs": 5 * 10**8, "MemoryBytes": 32 << 20}
    assert api.daemon.agent is not None
    held = api.daemon.agent.session.secrets  # type: ignore[attr-defined]
    await eventually(lambda: held.held() == ({secret["ID"]}, {config["ID"]}))
    assert held.get_secret(secret["ID"]) == b"s3cret"
    assert held.get_config(config["ID"]) == b"a: 1\n"
    await docker(api, home, "stack", "rm", "shop")
    await eventually(lambda: held.held() == (set(), set()), timeout=20)
