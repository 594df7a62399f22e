"""`service update|scale|rollback`: GET, edit the whole spec, POST it back with ?version=N."""

from __future__ import annotations

from typing import Any

import pytest

from .fakes import FakeDaemon, Reply, Shoal

PORT_8080 = {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}
PORT_9090 = {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 9090, "PublishMode": "ingress"}
PORT_53 = {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 5353, "PublishMode": "ingress"}


@pytest.fixture
def web(daemon: FakeDaemon) -> dict[str, Any]:
    return daemon.add_service(
        "web",
        {
            "Labels": {"a": "1", "b": "2"},
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "busybox:latest",
                    "Args": ["httpd"],
                    "Env": ["A=1", "B=2"],
                },
                "ForceUpdate": 0,
            },
            "Mode": {"Replicated": {"Replicas": 3}},
            "EndpointSpec": {"Mode": "vip", "Ports": [PORT_8080]},
        },
    )


def _posted(daemon: FakeDaemon, web: dict[str, Any]) -> Any:
    posts = daemon.requests_to("POST", f"/services/{web['ID']}/update")
    assert len(posts) == 1
    return posts[0]


def test_publish_add_posts_the_whole_spec_with_its_version(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    before = web["Spec"]
    result = shoal("service", "update", "-d", "--publish-add", "published=9090,target=80", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == "web\n"
    get = daemon.requests[0]
    assert (get.method, get.path, get.params) == (
        "GET",
        "/services/web",
        {"insertDefaults": "false"},
    )
    post = _posted(daemon, web)
    assert post.params == {"registryAuthFrom": "spec", "version": "10"}
    assert post.body == {**before, "EndpointSpec": {"Mode": "vip", "Ports": [PORT_8080, PORT_9090]}}


@pytest.mark.parametrize(
    ("removal", "left"),
    [
        (["--publish-rm", "80"], [PORT_53]),  # docker: by target port (and protocol, mode)
        (["--publish-rm", "9090"], [PORT_53, PORT_8080]),  # no target 9090: the published one
        (["--publish-rm", "published=9090,target=80"], [PORT_53, PORT_8080]),
        (["--publish-rm", "9090:80"], [PORT_53, PORT_8080]),
        (["--publish-rm", "53/udp"], [PORT_8080, PORT_9090]),
        (["--publish-rm", "53"], [PORT_53, PORT_8080, PORT_9090]),  # tcp: no match
        (["--publish-rm", "5353/udp"], [PORT_8080, PORT_9090]),
    ],
)
def test_publish_rm(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any], removal: list[str], left: list[Any]
) -> None:
    web["Spec"]["EndpointSpec"]["Ports"] = [PORT_53, PORT_9090, PORT_8080]
    assert shoal("service", "update", "-d", *removal, "web").exit_code == 0
    assert _posted(daemon, web).body["EndpointSpec"]["Ports"] == left


def test_publish_add_of_an_existing_port_changes_nothing(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    assert shoal("service", "update", "-d", "--publish-add", "8080:80", "web").exit_code == 0
    assert _posted(daemon, web).body["EndpointSpec"]["Ports"] == [PORT_8080]


def test_env_and_label_edits(shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]) -> None:
    result = shoal(
        "service", "update", "-d", "--env-add", "B=3", "--env-add", "C=4", "--env-rm", "A",
        "--label-add", "c=3", "--label-rm", "a", "web",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = _posted(daemon, web).body
    assert body["TaskTemplate"]["ContainerSpec"]["Env"] == ["B=3", "C=4"]
    assert body["Labels"] == {"b": "2", "c": "3"}


def test_replicas_force_image_args(shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]) -> None:
    result = shoal(
        "service", "update", "-d", "--replicas", "5", "--force", "--image", "alpine",
        "--args", "sh -c 'sleep 1'", "--restart-condition", "none", "web",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = _posted(daemon, web).body
    assert body["Mode"] == {"Replicated": {"Replicas": 5}}
    assert body["TaskTemplate"]["ForceUpdate"] == 1
    assert body["TaskTemplate"]["ContainerSpec"]["Image"] == "alpine:latest"
    assert body["TaskTemplate"]["ContainerSpec"]["Args"] == ["sh", "-c", "sleep 1"]
    assert body["TaskTemplate"]["RestartPolicy"] == {
        "Condition": "none", "Delay": 5_000_000_000, "MaxAttempts": 0,
    }  # fmt: skip


def test_update_config_merges_into_the_existing_one(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    web["Spec"]["UpdateConfig"] = {"Parallelism": 1, "Delay": 3_000_000_000, "Order": "stop-first"}
    assert shoal("service", "update", "-d", "--update-parallelism", "0", "web").exit_code == 0
    assert _posted(daemon, web).body["UpdateConfig"] == {
        "Parallelism": 0, "Delay": 3_000_000_000, "Order": "stop-first",
    }  # fmt: skip


def test_health_check_spelled_differently_by_the_daemon_is_edited_in_place(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    web["Spec"]["TaskTemplate"]["ContainerSpec"]["HealthCheck"] = {"Test": ["NONE"]}
    assert shoal("service", "update", "-d", "--health-cmd", "true", "web").exit_code == 0
    container = _posted(daemon, web).body["TaskTemplate"]["ContainerSpec"]
    assert container["HealthCheck"] == {"Test": ["CMD-SHELL", "true"]}
    assert "Healthcheck" not in container


def test_stale_version_error_is_the_daemons(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    daemon.overrides[("POST", f"/services/{web['ID']}/update")] = Reply(
        500, json={"message": "rpc error: code = Unknown desc = update out of sequence"}
    )
    result = shoal("service", "update", "-d", "--replicas", "2", "web")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error response from daemon: rpc error: code = Unknown desc = update out of sequence\n"
    )


def test_unknown_service(shoal: Shoal, daemon: FakeDaemon) -> None:
    result = shoal("service", "update", "-d", "--replicas", "2", "nosuch")
    assert result.exit_code == 1
    assert result.stderr == "Error response from daemon: service nosuch not found\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--publish-add", "published=1,target=x"],
            'for "--publish-add" flag: invalid target port',
        ),
        (["--publish-rm", "abc"], 'invalid argument "abc" for "--publish-rm" flag'),
        (["--update-delay", "soon"], 'time: invalid duration "soon"'),
        (["--rollback", "--replicas", "2"], "other flags may not be combined with --rollback"),
        (["--no-healthcheck", "--health-retries", "2"], "conflicts with --health-* options"),
    ],
)
def test_bad_update_flags_send_nothing(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any], args: list[str], message: str
) -> None:
    result = shoal("service", "update", "-d", *args, "web")
    # docker: 125 for a flag value its parser refuses, 1 for what the command refuses
    assert result.exit_code == (125 if result.stderr.startswith("invalid argument") else 1)
    assert message in result.stderr
    assert daemon.requests == []


def test_replicas_of_a_global_service_is_refused(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.add_service("agent", {"Mode": {"Global": {}}})
    result = shoal("service", "update", "-d", "--replicas", "2", "agent")
    assert result.exit_code == 1
    assert "replicas can only be used with replicated mode" in result.stderr
    assert daemon.writes() == []


def test_update_rollback_flag(shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]) -> None:
    assert shoal("service", "update", "-d", "--rollback", "web").exit_code == 0
    assert _posted(daemon, web).params == {
        "registryAuthFrom": "spec", "rollback": "previous", "version": "10",
    }  # fmt: skip


def test_rollback_posts_the_current_spec(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    spec = web["Spec"]
    result = shoal("service", "rollback", "-d", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == "web\n"
    post = _posted(daemon, web)
    assert post.params == {"rollback": "previous", "version": "10"}
    assert post.body == spec


def test_scale(shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]) -> None:
    api = daemon.add_service("api")
    result = shoal("service", "scale", "-d", "web=10", "api=0")
    assert result.exit_code == 0, result.output
    assert result.stdout == "web scaled to 10\napi scaled to 0\n"
    post = _posted(daemon, web)
    assert post.params == {"version": "10"}
    assert post.body["Mode"] == {"Replicated": {"Replicas": 10}}
    assert _posted(daemon, api).body["Mode"] == {"Replicated": {"Replicas": 0}}


def test_scale_reports_each_failure_and_scales_the_rest(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    daemon.add_service("agent", {"Mode": {"Global": {}}})
    result = shoal("service", "scale", "-d", "nosuch=2", "web=x", "agent=2", "web=4")
    assert result.exit_code == 1
    assert result.stdout == "web scaled to 4\n"
    assert result.stderr.splitlines() == [
        "nosuch: Error response from daemon: service nosuch not found",
        'web: invalid replicas value x: strconv.ParseUint: parsing "x": invalid syntax',
        "agent: scale can only be used with replicated or replicated-job mode",
    ]


def test_scale_specifier_is_checked_first(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    result = shoal("service", "scale", "web=2", "web")
    assert result.exit_code == 1
    assert "invalid scale specifier 'web'" in result.stderr
    assert daemon.requests == []


def test_rm(shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]) -> None:
    result = shoal("service", "rm", "web", "nosuch")
    assert result.exit_code == 1
    assert result.stdout == "web\n"
    assert result.stderr == "Error response from daemon: service nosuch not found\n"
    assert daemon.services == {}


def _after_first_read(daemon: FakeDaemon, web: dict[str, Any], what: Any) -> None:
    """Run `what(web)` once, between the CLI's first read and its first update."""
    done: list[bool] = []

    def first_update(rec: Any) -> Reply:
        if not done:
            done.append(True)
            what(web)
        return daemon.route(rec)

    daemon.overrides[("POST", f"/services/{web['ID']}/update")] = first_update


@pytest.mark.parametrize("command", [["update", "-d", "--replicas", "2"], ["scale", "-d"],
                                     ["rollback", "-d"]])  # fmt: skip
def test_a_version_moved_by_the_rollout_status_alone_is_asked_again(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any], command: list[str]
) -> None:
    """The managers' rollout-status writes move the version without touching the spec:
    the update is sent again on a fresh read (docker's CLI failed with out of sequence)."""
    web["PreviousSpec"] = {**web["Spec"], "Labels": {}}
    _after_first_read(daemon, web, lambda s: s["Version"].update(Index=s["Version"]["Index"] + 1))
    args = ["service", *command, "web=2" if command[0] == "scale" else "web"]
    result = shoal(*args)
    assert result.exit_code == 0, result.output
    posts = daemon.requests_to("POST", f"/services/{web['ID']}/update")
    assert [p.params["version"] for p in posts] == ["10", "11"]
    assert posts[0].body == posts[1].body


def test_a_spec_changed_by_someone_else_is_still_refused(
    shoal: Shoal, daemon: FakeDaemon, web: dict[str, Any]
) -> None:
    def other_update(s: dict[str, Any]) -> None:
        s["Spec"] = {**s["Spec"], "Labels": {"changed": "by someone else"}}
        s["Version"] = {"Index": s["Version"]["Index"] + 1}

    _after_first_read(daemon, web, other_update)
    result = shoal("service", "update", "-d", "--replicas", "2", "web")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error response from daemon: rpc error: code = Unknown desc = update out of sequence\n"
    )
    assert len(daemon.requests_to("POST", f"/services/{web['ID']}/update")) == 1
    assert web["Spec"]["Labels"] == {"changed": "by someone else"}
