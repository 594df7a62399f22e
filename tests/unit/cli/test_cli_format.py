"""Pure helpers: Go templates, tabwriter tables, durations, flag value parsers, port ranges."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from shoal.cli.durations import format_duration, human_duration, parse_duration, parse_time
from shoal.cli.format import (
    image_display,
    image_with_tag,
    natural_key,
    render,
    service_ports,
    tabwrite,
)
from shoal.cli.opts import parse_env, parse_filters, parse_port, parse_uint
from shoal.cli.templates import HEADER_FUNCS, Row, TemplateError, parse

DATA = {
    "ID": "abc",
    "Self": True,
    "Labels": {"b": "2", "a": "1"},
    "Spec": {"Name": "web", "Replicas": 3, "Args": ["-f", "-p"]},
    "Empty": [],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.ID}}", "abc"),
        ("literal\ttext", "literal\ttext"),
        ("{{.Spec.Name}}/{{.Spec.Replicas}}", "web/3"),
        ("{{json .Labels}}", '{"b":"2","a":"1"}'),
        ("{{json .Spec.Args}}", '["-f","-p"]'),
        ('{{index .Labels "a"}}', "1"),
        ('{{index .Labels "zz"}}', "<no value>"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Labels}}", "map[a:1 b:2]"),
        ("{{.Spec.Args}}", "[-f -p]"),
        ("{{if .Self}}*{{else}}-{{end}}", "*"),
        ("{{if .Empty}}y{{else if .Self}}self{{else}}n{{end}}", "self"),
        ("{{range $k, $v := .Labels}}{{$k}}={{$v}},{{end}}", "a=1,b=2,"),
        ("{{range .Spec.Args}}[{{.}}]{{end}}", "[-f][-p]"),
        ("{{range .Empty}}x{{else}}none{{end}}", "none"),
        ("{{with .Spec}}{{.Name}}{{end}}", "web"),
        ("{{.Spec.Name | upper}}", "WEB"),
        ('{{join .Spec.Args ","}}', "-f,-p"),
        ('{{printf "%s=%d" .ID .Spec.Replicas}}', "abc=3"),
        ("{{len .Labels}}", "2"),
        ('{{if eq .Spec.Name "web"}}yes{{end}}', "yes"),
        ("{{if and .Self (gt .Spec.Replicas 2)}}big{{end}}", "big"),
        ("a  {{- .ID -}}  b", "aabcb"),
        ("{{$x := .ID}}{{$x}}-{{$.Spec.Name}}", "abc-web"),
        ("{{/* a comment */}}ok", "ok"),
        ('{{ "}}" }}', "}}"),
    ],
)
def test_templates(template: str, expected: str) -> None:
    assert parse(template).execute(DATA) == expected


@pytest.mark.parametrize(
    "template", ["{{.ID", "{{if .Self}}x", "{{end}}", "{{nofunc .ID}}", "{{.ID .ID}}", "{{$nope}}"]
)
def test_bad_templates(template: str) -> None:
    with pytest.raises(TemplateError):
        parse(template).execute(DATA)


def test_rows_refuse_unknown_fields_and_headers_use_column_names() -> None:
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        parse("{{.Nope}}").execute(Row(ID="x"))
    header = Row(ID="ID", Labels="LABELS")
    assert parse("{{.ID}}\t{{json .Labels}}").execute(header, HEADER_FUNCS) == "ID\tLABELS"


def test_tabwrite_pads_like_go() -> None:
    text = "ID\tNAME\tPORTS\nx5oi3qkhyj8g\tweb\t*:8080->80/tcp\nshort\tsome-long-name\t\n"
    assert tabwrite(text) == (
        "ID             NAME             PORTS\n"
        "x5oi3qkhyj8g   web              *:8080->80/tcp\n"
        "short          some-long-name   \n"
    )
    # a line with fewer cells ends the column block, like Go's tabwriter
    assert tabwrite("a\tb\nlonger-cell-here\n") == "a         b\nlonger-cell-here\n"


def test_render_formats() -> None:
    rows = [{"ID": "1", "Name": "a"}, {"ID": "22", "Name": "b"}]
    headers = {"ID": "ID", "Name": "NAME"}
    assert (
        render(rows, "", "table {{.ID}}\t{{.Name}}", headers)
        == "ID        NAME\n1         a\n22        b\n"
    )
    assert render(rows, "{{.Name}}", "", headers) == "a\nb\n"
    assert render(rows, "json", "", headers) == '{"ID":"1","Name":"a"}\n{"ID":"22","Name":"b"}\n'
    assert render([], "table {{.Name}}", "", headers) == "NAME\n"


@pytest.mark.parametrize(
    ("fmt", "fields_only"),
    [
        ("table {{.ID}}\t{{.Name}}\t{{.Value}}", True),
        ("{{.Name}}: {{.Value}} }} {{.Name}}", True),
        ("plain text", True),
        ("table {{.Nope}}", True),  # filled in by the engine, for its error
        ("{{.Name | upper}} {{ .ID }}", False),
        ("{{.Value.x}}", False),
        ("{{- .Name}}", False),
        ("{{.Name", False),
        ("{{json .}}", False),
        ("table {{.Name}}\t{{title .ID}}", False),
    ],
)
def test_field_only_templates_fill_in_as_the_engine_does(fmt: str, fields_only: bool) -> None:
    from shoal.cli.format import _fields_only, _template_text

    rows = [Row(ID="1", Name="a", Value={"x": [1, None]}), Row(ID="22", Name="ü", Value=None)]
    headers = {"ID": "ID", "Name": "NAME", "Value": "VALUE"}
    text = _template_text(fmt)
    assert (_fields_only(text) is not None) == fields_only
    try:
        tmpl = parse(text)
        body = "".join(tmpl.execute(row) + "\n" for row in rows)
        if fmt.startswith("table"):
            body = tabwrite(tmpl.execute(Row(headers), HEADER_FUNCS) + "\n" + body)
    except TemplateError as exc:
        with pytest.raises(TemplateError, match=re.escape(str(exc))):
            render(rows, fmt, "", headers)
    else:
        assert render(rows, fmt, "", headers) == body


def test_service_ls_imports_no_template_engine() -> None:
    import subprocess
    import sys

    code = ("import sys, shoal.cli.main, shoal.cli.service_view; print(sorted({"
            "'shoal.cli.templates', 'dataclasses', 'csv', 'ipaddress', 'http.client', 'ssl', "
            "'email', 'urllib.parse'} & set(sys.modules)))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout == "[]\n"


def test_service_ports_groups_ranges_like_docker() -> None:
    def port(pub: int, target: int, proto: str = "tcp", mode: str = "ingress") -> dict[str, object]:
        return {"PublishedPort": pub, "TargetPort": target, "Protocol": proto, "PublishMode": mode}

    ports = [
        port(8081, 81),
        port(8080, 80),
        port(9090, 80),
        port(53, 53, "udp"),
        port(22, 22, mode="host"),
    ]
    assert service_ports(ports) == "*:8080-8081->80-81/tcp, *:9090->80/tcp, *:53->53/udp"
    assert service_ports([port(80, 80), port(81, 80)]) == "*:80-81->80/tcp"
    assert service_ports(None) == ""


def test_images() -> None:
    assert image_with_tag("busybox") == "busybox:latest"
    assert image_with_tag("registry:5000/a/b") == "registry:5000/a/b:latest"
    assert image_with_tag("busybox:1.36") == "busybox:1.36"
    digest = "busybox@sha256:" + "a" * 64
    assert image_with_tag(digest) == digest
    assert image_with_tag("/bin/sh") == "/bin/sh"  # not a reference: left alone
    assert image_display("busybox:1@sha256:" + "a" * 64) == "busybox:1"
    assert image_display(digest) == digest


def test_natural_sort() -> None:
    names = ["web.10", "web.2", "web.1", "api.1"]
    assert sorted(names, key=natural_key) == ["api.1", "web.1", "web.2", "web.10"]


@pytest.mark.parametrize(
    ("text", "ns", "back"),
    [
        ("10s", 10_000_000_000, "10s"),
        ("1m30s", 90_000_000_000, "1m30s"),
        ("500ms", 500_000_000, "500ms"),
        ("1.5h", 5_400_000_000_000, "1h30m0s"),
        ("0", 0, "0s"),
        ("-2s", -2_000_000_000, "-2s"),
        ("300us", 300_000, "300µs"),
    ],
)
def test_durations(text: str, ns: int, back: str) -> None:
    assert parse_duration(text) == ns
    assert format_duration(ns) == back


@pytest.mark.parametrize("text", ["10", "x", "1q", "", "-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="time: "):
        parse_duration(text)


def test_human_duration_and_time() -> None:
    assert [human_duration(s) for s in (0.5, 1, 59, 60, 119, 3600, 7200, 86400 * 3)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "About a minute",
        "About an hour", "2 hours", "3 days",
    ]  # fmt: skip
    assert parse_time("2025-01-01T12:00:00.123456789Z") == datetime(
        2025, 1, 1, 12, 0, 0, 123456, UTC
    )
    assert parse_time("nonsense") is None


def test_flag_value_parsers() -> None:
    assert parse_port("8080-8081:80-81") == [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
        {"Protocol": "tcp", "TargetPort": 81, "PublishedPort": 8081, "PublishMode": "ingress"},
    ]
    assert parse_port("80") == [{"Protocol": "tcp", "TargetPort": 80, "PublishMode": "ingress"}]
    assert parse_uint("0x10") == 16
    assert parse_env("HOME", {"HOME": "/root"}) == "HOME=/root"
    assert parse_env("NOPE", {}) == "NOPE"
    assert parse_filters(["Name=web", "name=api", "label=a=b"]) == {
        "name": {"web": True, "api": True}, "label": {"a=b": True},
    }  # fmt: skip
    with pytest.raises(ValueError, match="bad format of filter"):
        parse_filters(["web"])
