"""Swarm's service templates (`--hostname "{{.Service.Name}}-{{.Task.Slot}}"`): pure."""

from __future__ import annotations

import pytest

from shoal.api.templates import TaskIdentity, TemplateError, check_template, expand

IDENT = TaskIdentity("t1", "web.2.t1", 2, "s1", "web", "n1", "node-a")


def test_every_field_expands() -> None:
    text = ("{{.Service.Name}}-{{.Task.Slot}} {{.Task.Name}} {{ .Task.ID }} {{.Service.ID}} "
            "{{.Node.ID}} {{.Node.Hostname}}")  # fmt: skip
    assert expand(text, IDENT) == "web-2 web.2.t1 t1 s1 n1 node-a"
    assert expand("plain", IDENT) == "plain"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{.Task.Nope}}", 'template: expansion:1:2: executing "expansion" at <.Task.Nope>: '
                           "can't evaluate field Nope in type template.TaskContext"),
        ("x{{.Foo}}", 'template: expansion:1:3: executing "expansion" at <.Foo>: '
                      "can't evaluate field Foo in type template.Context"),
        ("{{.Task.Slot", "template: expansion:1: unclosed action"),
        ("{{}}", "template: expansion:1: missing value for command"),
        ("{{upper .Task.ID}}", 'template: expansion:1: function "upper" not defined'),
    ],
)
def test_bad_templates_are_refused_in_gos_words(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        check_template(text)
    assert str(info.value) == message
