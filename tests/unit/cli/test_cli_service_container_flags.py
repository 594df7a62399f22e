"""`service create|update` container flags: docker's syntax, bodies and messages."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.cli.service_mounts import parse_config, parse_mount, parse_secret, parse_ulimit

from .fakes import FakeDaemon, Recorded, Reply, Shoal


def _created(daemon: FakeDaemon) -> Any:
    posts = daemon.requests_to("POST", "/services/create")
    assert len(posts) == 1
    return posts[0].body


def _container(daemon: FakeDaemon) -> Any:
    return _created(daemon)["TaskTemplate"]["ContainerSpec"]


def _secrets_route(daemon: FakeDaemon, kind: str, objects: dict[str, str]) -> None:
    import json

    def answer(rec: Recorded) -> Reply:
        names = json.loads(rec.params["filters"])["name"]
        found = [{"ID": objects[n], "Spec": {"Name": n}} for n in names if n in objects]
        return Reply(200, json=found)

    daemon.overrides[("GET", f"/{kind}")] = answer


def test_mount_csv_is_dockers() -> None:
    assert parse_mount("type=bind,source=/srv,target=/data,readonly") == {
        "Type": "bind", "Source": "/srv", "Target": "/data", "ReadOnly": True,
    }  # fmt: skip
    assert parse_mount("src=vol,dst=/v,volume-label=a=b,volume-nocopy,volume-driver=local") == {
        "Type": "volume", "Source": "vol", "Target": "/v",
        "VolumeOptions": {"Labels": {"a": "b"}, "NoCopy": True, "DriverConfig": {"Name": "local"}},
    }  # fmt: skip
    assert parse_mount("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770") == {
        "Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770},
    }  # fmt: skip
    assert parse_mount("type=bind,src=/a,dst=/b,bind-propagation=rslave")["BindOptions"] == {
        "Propagation": "rslave"
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("type=bind,source=/a", "target is required"),
        ("type=,target=/a", "type is required"),
        ("type=bind,target=/a,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
        ("type=bind,target=/a,oops", "invalid field 'oops' must be a key=value pair"),
        ("type=bind,target=/a,readonly=maybe", "invalid value for readonly: maybe"),
        ("type=tmpfs,target=/a,tmpfs-size=lots", "invalid value for tmpfs-size: lots"),
        ("type=tmpfs,target=/a,tmpfs-mode=9", "invalid value for tmpfs-mode: 9"),
        ("type=bind,target=/a,volume-nocopy",
         "cannot mix 'volume-*' options with mount type 'bind'"),
        ("type=volume,target=/a,tmpfs-size=1m",
         "cannot mix 'tmpfs-*' options with mount type 'volume'"),
    ],
)  # fmt: skip
def test_bad_mount_is_refused_with_dockers_message(
    shoal: Shoal, daemon: FakeDaemon, value: str, message: str
) -> None:
    result = shoal("service", "create", "-d", "--mount", value, "busybox")
    assert result.exit_code != 0
    assert f'invalid argument "{value}" for "--mount" flag: {message}' in result.output
    assert daemon.writes() == []


def test_secret_short_and_long_syntax() -> None:
    assert parse_secret("db") == {
        "File": {"Name": "db", "UID": "0", "GID": "0", "Mode": 0o444}, "SecretName": "db",
    }  # fmt: skip
    assert parse_config("source=app,target=/etc/app.conf,uid=10,gid=20,mode=0400") == {
        "File": {"Name": "/etc/app.conf", "UID": "10", "GID": "20", "Mode": 0o400},
        "ConfigName": "app",
    }  # fmt: skip
    with pytest.raises(ValueError, match="source is required"):
        parse_secret("target=x")
    with pytest.raises(ValueError, match="invalid field in secret request: colour"):
        parse_secret("source=a,colour=red")
    with pytest.raises(ValueError, match="invalid mode specified"):
        parse_secret("source=a,mode=rw")


def test_ulimit_syntax() -> None:
    assert parse_ulimit("nofile=1024:2048") == {"Name": "nofile", "Soft": 1024, "Hard": 2048}
    assert parse_ulimit("nproc=64") == {"Name": "nproc", "Soft": 64, "Hard": 64}
    with pytest.raises(ValueError, match="invalid ulimit type: files"):
        parse_ulimit("files=1")
    with pytest.raises(ValueError, match="invalid ulimit argument: nofile"):
        parse_ulimit("nofile")
    with pytest.raises(ValueError, match="soft limit must be less than or equal to hard"):
        parse_ulimit("nofile=10:5")


def test_create_container_flags_body(shoal: Shoal, daemon: FakeDaemon) -> None:
    _secrets_route(daemon, "secrets", {"db": "sec1"})
    _secrets_route(daemon, "configs", {"app": "cfg1"})
    result = shoal(
        "service", "create", "-d", "--name", "web", "-u", "nobody:nogroup", "-w", "/srv",
        "--hostname", "{{.Task.Slot}}", "--read-only", "--init", "--cap-add", "net_admin",
        "--cap-drop", "ALL", "--sysctl", "net.core.somaxconn=1024", "--ulimit", "nofile=64:128",
        "--stop-signal", "SIGINT", "--stop-grace-period", "3s", "--entrypoint", "/bin/sh -c",
        "--oom-score-adj", "-100", "--limit-cpu", "0.5", "--limit-memory", "32M",
        "--limit-pids", "50", "--reserve-cpu", "0.25", "--reserve-memory", "16M",
        "--mount", "type=tmpfs,target=/tmp", "--secret", "db",
        "--config", "source=app,target=/etc/app.conf", "busybox", "sleep", "1d",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = _created(daemon)
    container = body["TaskTemplate"]["ContainerSpec"]
    assert container["User"] == "nobody:nogroup" and container["Dir"] == "/srv"
    assert container["Hostname"] == "{{.Task.Slot}}"
    assert container["ReadOnly"] is True and container["Init"] is True
    assert container["CapabilityAdd"] == ["CAP_NET_ADMIN"]
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert container["Ulimits"] == [{"Name": "nofile", "Soft": 64, "Hard": 128}]
    assert container["StopSignal"] == "SIGINT" and container["StopGracePeriod"] == 3_000_000_000
    assert container["Command"] == ["/bin/sh", "-c"] and container["Args"] == ["sleep", "1d"]
    assert container["OomScoreAdj"] == -100
    assert container["Mounts"] == [{"Type": "tmpfs", "Target": "/tmp"}]
    assert container["Secrets"] == [{
        "File": {"Name": "db", "UID": "0", "GID": "0", "Mode": 0o444},
        "SecretName": "db", "SecretID": "sec1",
    }]  # fmt: skip
    assert container["Configs"][0]["ConfigID"] == "cfg1"
    assert body["TaskTemplate"]["Resources"] == {
        "Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 32 << 20, "Pids": 50},
        "Reservations": {"NanoCPUs": 250_000_000, "MemoryBytes": 16 << 20},
    }
    assert "shoal.runtime" not in (container.get("Labels") or {})


def test_unknown_secret_is_refused_before_create(shoal: Shoal, daemon: FakeDaemon) -> None:
    _secrets_route(daemon, "secrets", {})
    result = shoal("service", "create", "-d", "--secret", "nope", "busybox")
    assert result.exit_code != 0
    assert "secret not found: nope" in result.output
    assert daemon.writes() == []


def test_duplicate_secret_target_is_refused(shoal: Shoal, daemon: FakeDaemon) -> None:
    result = shoal("service", "create", "-d", "--secret", "source=a,target=x",
                   "--secret", "source=b,target=x", "busybox")  # fmt: skip
    assert result.exit_code != 0
    assert "duplicate secret target for b not allowed" in result.output
    assert daemon.writes() == []


def test_runtime_exec_is_the_label(shoal: Shoal, daemon: FakeDaemon) -> None:
    assert shoal("service", "create", "-d", "--runtime", "exec", "sleep", "9").exit_code == 0
    assert _container(daemon)["Labels"] == {"shoal.runtime": "exec"}
    result = shoal("service", "create", "-d", "--runtime", "runc", "busybox")
    assert 'invalid argument "runc" for "--runtime" flag' in result.output


def _update(shoal: Shoal, daemon: FakeDaemon, *flags: str) -> Any:
    result = shoal("service", "update", "-d", *flags, "web")
    assert result.exit_code == 0, result.output
    posts = [r for r in daemon.requests if r.method == "POST" and r.path.endswith("/update")]
    return posts[-1].body["TaskTemplate"]["ContainerSpec"]


def test_update_add_and_rm_forms(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.add_service("web", {"TaskTemplate": {"ContainerSpec": {
        "Image": "busybox:latest", "Labels": {"shoal.runtime": "exec"},
        "Mounts": [{"Type": "volume", "Source": "a", "Target": "/a"},
                   {"Type": "volume", "Source": "b", "Target": "/b"}],
        "Secrets": [{"SecretName": "old", "SecretID": "o1",
                     "File": {"Name": "old", "UID": "0", "GID": "0", "Mode": 292}}],
        "Sysctls": {"a.b": "1"}, "Ulimits": [{"Name": "nproc", "Soft": 1, "Hard": 1}],
        "CapabilityDrop": ["CAP_NET_RAW"]}}})  # fmt: skip
    _secrets_route(daemon, "secrets", {"new": "n1"})
    container = _update(
        shoal, daemon, "--mount-add", "type=tmpfs,target=/a", "--mount-rm", "/b",
        "--secret-rm", "old", "--secret-add", "new", "--sysctl-add", "c.d=2",
        "--sysctl-rm", "a.b", "--ulimit-add", "nofile=5:6", "--ulimit-rm", "nproc",
        "--cap-add", "NET_RAW", "--runtime", "oci",
    )  # fmt: skip
    assert container["Mounts"] == [{"Type": "tmpfs", "Target": "/a"}]
    assert [s["SecretID"] for s in container["Secrets"]] == ["n1"]
    assert container["Sysctls"] == {"c.d": "2"}
    assert container["Ulimits"] == [{"Name": "nofile", "Soft": 5, "Hard": 6}]
    assert container["CapabilityAdd"] == ["CAP_NET_RAW"] and container["CapabilityDrop"] == []
    assert container["Labels"] == {}


def test_update_limits(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.add_service("web")
    result = shoal("service", "update", "-d", "--limit-memory", "64m", "--reserve-cpu", "1", "web")
    assert result.exit_code == 0, result.output
    body = [r for r in daemon.requests if r.path.endswith("/update")][-1].body
    assert body["TaskTemplate"]["Resources"] == {
        "Limits": {"MemoryBytes": 64 << 20}, "Reservations": {"NanoCPUs": 1_000_000_000},
    }  # fmt: skip


def test_with_registry_auth_sends_the_config_credentials(
    shoal: Shoal, daemon: FakeDaemon, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64
    import json

    auth = base64.b64encode(b"bob:builder").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"reg.lab:5000": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    result = shoal("service", "create", "-d", "--with-registry-auth", "reg.lab:5000/web:1")
    assert result.exit_code == 0, result.output
    header = daemon.requests_to("POST", "/services/create")[0].headers["x-registry-auth"]
    sent = json.loads(base64.urlsafe_b64decode(header))
    assert sent == {"username": "bob", "password": "builder", "serveraddress": "reg.lab:5000"}
    # without the flag nothing is sent, and an update keeps the stored credentials
    daemon.add_service("web")
    assert shoal("service", "update", "-d", "--force", "web").exit_code == 0
    update = [r for r in daemon.requests if r.path.endswith("/update")][-1]
    assert "x-registry-auth" not in update.headers
    assert update.params["registryAuthFrom"] == "spec"
    # a registry with no credentials: docker's empty AuthConfig
    assert shoal("service", "update", "-d", "--with-registry-auth", "web").exit_code == 0
    update = [r for r in daemon.requests if r.path.endswith("/update")][-1]
    assert base64.urlsafe_b64decode(update.headers["x-registry-auth"]) == b"{}"
    assert "registryAuthFrom" not in update.params
