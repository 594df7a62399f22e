"""`shoal secret|config`: docker's calls and output (the texts below are docker 28.2's,
taken against a lab: docs/design/user-walkthrough.md, session 12)."""

from __future__ import annotations

import base64
from pathlib import Path

from click.testing import CliRunner

from shoal.cli.main import cli

from .fakes import FakeDaemon, Reply, Shoal

SECRET = {
    "ID": "41idvcaz5chsgj6u0j2ikbzcy", "Version": {"Index": 19},
    "CreatedAt": "2026-12-04T21:16:28.670922Z", "UpdatedAt": "2026-12-04T21:16:28.670922Z",
    "Spec": {"Name": "dbpass", "Labels": {}},
}  # fmt: skip
CONFIG = {
    "ID": "9w6ut0ob355xym1eulnhgif2e", "Version": {"Index": 1877},
    "CreatedAt": "2026-12-04T21:44:53.080609Z", "UpdatedAt": "2026-12-04T21:44:53.080609Z",
    "Spec": {"Name": "cfg2", "Labels": {"a": "b", "c": ""}, "Data": "eA=="},
}  # fmt: skip


def test_create_from_a_file_and_from_stdin(
    shoal: Shoal, daemon: FakeDaemon, tmp_path: Path
) -> None:
    daemon.overrides[("POST", "/secrets/create")] = Reply(201, json={"ID": "s1"})
    daemon.overrides[("POST", "/configs/create")] = Reply(201, json={"ID": "c1"})
    path = tmp_path / "pw"
    path.write_bytes(b"s3cr3t")
    made = shoal("secret", "create", "-l", "team=a", "dbpass", str(path))
    assert (made.exit_code, made.stdout) == (0, "s1\n")
    assert daemon.requests[-1].body == {
        "Name": "dbpass", "Labels": {"team": "a"}, "Data": base64.b64encode(b"s3cr3t").decode(),
    }  # fmt: skip
    made = CliRunner().invoke(
        cli, ["config", "create", "appcfg", "-"], obj=shoal.context(), input=b"key=val\n"
    )
    assert (made.exit_code, made.stdout) == (0, "c1\n")
    assert daemon.requests[-1].body["Data"] == base64.b64encode(b"key=val\n").decode()
    missing = shoal("secret", "create", "x", str(tmp_path / "nope"))
    assert missing.exit_code == 1
    assert missing.stderr == (
        f"error reading from {tmp_path}/nope: open {tmp_path}/nope: no such file or directory\n"
    )


def test_ls_and_inspect_pretty_print_what_docker_prints(shoal: Shoal, daemon: FakeDaemon) -> None:
    other = {**SECRET, "ID": "2gi4183fqsger428nk4orvgg5", "Spec": {"Name": "apikey"}}
    daemon.overrides[("GET", "/secrets")] = Reply(200, json=[SECRET, other])
    daemon.overrides[("GET", "/secrets/dbpass")] = Reply(200, json=SECRET)
    daemon.overrides[("GET", "/configs/cfg2")] = Reply(200, json=CONFIG)
    listed = shoal("secret", "ls").stdout.splitlines()
    assert listed[0].split() == ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]
    assert [line.split()[1] for line in listed[1:]] == ["apikey", "dbpass"]  # by name
    assert shoal("secret", "ls", "-q").stdout == "2gi4183fqsger428nk4orvgg5\n" + SECRET["ID"] + "\n"
    assert shoal("secret", "inspect", "--pretty", "dbpass").stdout == (
        "ID:              41idvcaz5chsgj6u0j2ikbzcy\n"
        "Name:              dbpass\n"
        "Driver:            \n"
        "Created at:        2026-12-04 21:16:28.670922 +0000 utc\n"
        "Updated at:        2026-12-04 21:16:28.670922 +0000 utc\n"
    )
    assert shoal("config", "inspect", "--pretty", "cfg2").stdout == (
        "ID:\t\t\t9w6ut0ob355xym1eulnhgif2e\n"
        "Name:\t\t\tcfg2\n"
        "Labels:\n - a=b\n - c\n"
        "Created at:            \t2026-12-04 21:44:53.080609 +0000 utc\n"
        "Updated at:            \t2026-12-04 21:44:53.080609 +0000 utc\n"
        "Data:\nx\n"
    )


def test_rm_goes_on_after_an_error_and_exits_1(shoal: Shoal, daemon: FakeDaemon) -> None:
    daemon.overrides[("DELETE", "/secrets/nosuch")] = Reply(
        404, json={"message": "secret nosuch not found"}
    )
    daemon.overrides[("DELETE", "/secrets/dbpass")] = Reply(204)
    result = shoal("secret", "rm", "nosuch", "dbpass")
    assert result.exit_code == 1
    assert result.stdout == "dbpass\n"
    assert result.stderr == "Error response from daemon: secret nosuch not found\n"
