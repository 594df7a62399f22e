"""`service create`: flags become docker's exact body; bad flags send nothing."""

from __future__ import annotations

from typing import Any

import pytest

from .fakes import FakeDaemon, Reply, Shoal


def _created(daemon: FakeDaemon) -> Any:
    posts = daemon.requests_to("POST", "/services/create")
    assert len(posts) == 1
    return posts[0].body


def test_create_body_is_dockers(shoal: Shoal, daemon: FakeDaemon) -> None:
    result = shoal(
        "service", "create", "-d", "--name", "web", "--replicas", "3",
        "--publish", "published=8080,target=80", "busybox", "httpd", "-f", "-p", "80",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _created(daemon) == {
        "Name": "web",
        "Labels": {},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "busybox:latest",
                "Args": ["httpd", "-f", "-p", "80"],
                "Init": False,
                "DNSConfig": {},
            },
            "Resources": {"Limits": {}, "Reservations": {}},
            "Placement": {},
            "ForceUpdate": 0,
        },
        "Mode": {"Replicated": {"Replicas": 3}},
        "EndpointSpec": {
            "Mode": "vip",
            "Ports": [
                {
                    "Protocol": "tcp",
                    "TargetPort": 80,
                    "PublishedPort": 8080,
                    "PublishMode": "ingress",
                }
            ],
        },
    }
    service_id = next(iter(daemon.services))
    assert result.stdout == service_id + "\n"


def test_create_without_replicas_sends_empty_replicated_mode(
    shoal: Shoal, daemon: FakeDaemon
) -> None:
    assert shoal("service", "create", "-d", "busybox").exit_code == 0
    body = _created(daemon)
    assert body["Mode"] == {"Replicated": {}}
    assert "Name" not in body
    assert body["TaskTemplate"]["ContainerSpec"] == {
        "Image": "busybox:latest",
        "Init": False,
        "DNSConfig": {},
    }


def test_create_many_flags(shoal: Shoal, daemon: FakeDaemon) -> None:
    result = shoal(
        "service", "create", "-d", "--name", "api", "--mode", "global",
        "-p", "53:53/udp", "-p", "9000:90", "-p", "published=7000,target=70,mode=host",
        "-e", "A=1", "--env", "B=2", "-e", "A=3", "--label", "tier=front", "-l", "solo",
        "--restart-condition", "on-failure", "--restart-max-attempts", "3",
        "--restart-window", "1m30s",
        "--update-parallelism", "2", "--update-delay", "10s", "--update-order", "start-first",
        "--update-failure-action", "rollback",
        "--constraint", "node.role==worker", "--placement-pref", "spread=node.labels.rack",
        "--health-cmd", "true", "--health-interval", "500ms", "--health-retries", "2",
        "--stop-grace-period", "20s", "--no-resolve-image", "--limit-memory", "64m",
        "registry:5000/app:1.2", "serve",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = _created(daemon)
    task = body["TaskTemplate"]
    container = task["ContainerSpec"]
    assert body["Mode"] == {"Global": {}}
    assert body["Labels"] == {"tier": "front", "solo": ""}
    assert container["Image"] == "registry:5000/app:1.2"
    assert container["Args"] == ["serve"]
    assert container["Env"] == ["B=2", "A=3"]
    assert container["StopGracePeriod"] == 20_000_000_000
    assert container["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 500_000_000,
        "Retries": 2,
    }
    assert task["RestartPolicy"] == {
        "Condition": "on-failure",
        "Delay": 5_000_000_000,
        "MaxAttempts": 3,
        "Window": 90_000_000_000,
    }
    assert task["Placement"] == {
        "Constraints": ["node.role==worker"],
        "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.rack"}}],
    }
    assert task["Resources"] == {"Limits": {"MemoryBytes": 64 * 1024 * 1024}, "Reservations": {}}
    assert body["UpdateConfig"] == {
        "Parallelism": 2, "Delay": 10_000_000_000, "FailureAction": "rollback",
        "Monitor": 5_000_000_000, "MaxFailureRatio": 0, "Order": "start-first",
    }  # fmt: skip
    assert body["EndpointSpec"]["Ports"] == [
        {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53, "PublishMode": "ingress"},
        {"Protocol": "tcp", "TargetPort": 90, "PublishedPort": 9000, "PublishMode": "ingress"},
        {"Protocol": "tcp", "TargetPort": 70, "PublishedPort": 7000, "PublishMode": "host"},
    ]


def test_options_after_the_image_are_the_commands(shoal: Shoal, daemon: FakeDaemon) -> None:
    assert (
        shoal(
            "service", "create", "-d", "--name", "web", "busybox", "httpd", "-d", "--name", "x"
        ).exit_code
        == 0
    )
    body = _created(daemon)
    assert body["Name"] == "web"
    assert body["TaskTemplate"]["ContainerSpec"]["Args"] == ["httpd", "-d", "--name", "x"]


def test_no_healthcheck(shoal: Shoal, daemon: FakeDaemon) -> None:
    assert shoal("service", "create", "-d", "--no-healthcheck", "busybox").exit_code == 0
    assert _created(daemon)["TaskTemplate"]["ContainerSpec"]["Healthcheck"] == {"Test": ["NONE"]}


def test_network_is_resolved_to_its_id(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.overrides[("GET", "/networks/front")] = Reply(
        200, json={"Id": "net123", "Name": "front"}
    )
    assert shoal("service", "create", "-d", "--network", "front", "busybox").exit_code == 0
    assert _created(daemon)["TaskTemplate"]["Networks"] == [{"Target": "net123"}]
    assert daemon.requests_to("GET", "/networks/front")[0].params == {"scope": "swarm"}


def test_network_name_kept_when_daemon_has_no_network_api(shoal: Shoal, daemon: FakeDaemon) -> None:
    assert shoal("service", "create", "-d", "--network", "front", "busybox").exit_code == 0
    assert _created(daemon)["TaskTemplate"]["Networks"] == [{"Target": "front"}]


def test_unknown_network_is_an_error(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.overrides[("GET", "/networks/nope")] = Reply(
        404, json={"message": "network nope not found"}
    )
    result = shoal("service", "create", "-d", "--network", "nope", "busybox")
    assert result.exit_code == 1
    assert result.stderr == "Error response from daemon: network nope not found\n"
    assert not daemon.requests_to("POST", "/services/create")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "published=x,target=80"],
         'invalid argument "published=x,target=80" for "-p, --publish" flag: '
         "invalid published port (x): value must be an integer: invalid syntax"),
        (["-p", "published=70000,target=80"],
         "invalid published port (70000): value must be an integer: value out of range"),
        (["--publish", "published=8080"], "missing mandatory field 'target'"),
        (["-p", "target=80,protocol=icmp"], "invalid protocol value 'icmp'"),
        (["-p", "target=80,mode=bridge"],
         "invalid publish mode value (bridge): must be either 'ingress' or 'host'"),
        (["-p", "99999:80"], 'for "-p, --publish" flag: invalid hostPort: 99999'),
        (["-p", "127.0.0.1:80:80"], "hostip is not supported"),
        (["--restart-delay", "10"],
         'invalid argument "10" for "--restart-delay" flag: time: missing unit in duration "10"'),
        (["--replicas", "-1"],
         'invalid argument "-1" for "--replicas" flag: '
         'strconv.ParseUint: parsing "-1": invalid syntax'),
        (["--health-interval", "-1s"], "duration cannot be negative"),
        (["--mode", "global", "--replicas", "2"],
         "replicas can only be used with replicated or replicated-job mode"),
        (["--mode", "daemonset"],
         "Unknown mode: daemonset, only replicated and global supported"),
        (["--no-healthcheck", "--health-cmd", "true"],
         "--no-healthcheck conflicts with --health-* options"),
        (["-e", "=x"], "invalid environment variable: =x"),
        (["--placement-pref", "pack=x"], "unsupported placement preference pack"),
    ],
)  # fmt: skip
def test_bad_flags_are_refused_before_any_request(
    shoal: Shoal, daemon: FakeDaemon, args: list[str], message: str
) -> None:
    result = shoal("service", "create", "-d", *args, "busybox")
    # docker: 125 for a flag value its parser refuses, 1 for what the command refuses
    assert result.exit_code == (125 if result.stderr.startswith("invalid argument") else 1)
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert daemon.requests == []


def test_published_zero_asks_for_a_dynamic_port_like_docker(
    shoal: Shoal, daemon: FakeDaemon
) -> None:
    assert shoal("service", "create", "-d", "-p", "published=0,target=80", "busybox").exit_code == 0
    assert _created(daemon)["EndpointSpec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 80, "PublishMode": "ingress"}
    ]


def test_daemon_error_is_printed_like_docker(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.overrides[("POST", "/services/create")] = Reply(
        409, json={"message": "rpc error: code = AlreadyExists desc = name conflicts"}
    )
    result = shoal("service", "create", "-d", "--name", "web", "busybox")
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error response from daemon: rpc error: code = AlreadyExists desc = name conflicts\n"
    )
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["--bogus", "x"], "unknown flag: --bogus"),
        (["-z"], "unknown shorthand flag: 'z' in -z"),
        (["--publish"], "flag needs an argument: --publish"),
        (["-p"], "flag needs an argument: 'p' in -p"),
    ],
)
def test_flags_docker_cannot_parse_exit_125_with_its_words(
    shoal: Shoal, daemon: FakeDaemon, args: list[str], first_line: str
) -> None:
    result = shoal("service", "create", *args)
    assert result.exit_code == 125
    assert result.stderr == (
        f"{first_line}\n\nUsage:  cli service create [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n"
        "Run 'cli service create --help' for more information\n"  # CliRunner's program name
    )
    assert daemon.requests == []
    missing = shoal("service", "create")  # a missing argument is no flag error: status 1
    assert missing.exit_code == 1


def test_a_bad_restart_condition_goes_to_the_daemon_as_dockers_does(
    shoal: Shoal, daemon: FakeDaemon
) -> None:
    daemon.overrides[("POST", "/services/create")] = Reply(
        400, json={"message": 'invalid RestartCondition: "sometimes"'}
    )
    result = shoal("service", "create", "-d", "--restart-condition", "sometimes", "busybox")
    assert (result.exit_code, result.stderr) == (
        1, 'Error response from daemon: invalid RestartCondition: "sometimes"\n'
    )
    sent = daemon.requests_to("POST", "/services/create")[0].body
    assert sent["TaskTemplate"]["RestartPolicy"]["Condition"] == "sometimes"
