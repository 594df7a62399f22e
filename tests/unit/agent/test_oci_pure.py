import pytest

from shoal.agent.oci.hostname import TaskIdentity, TemplateError, expand
from shoal.agent.oci.user import ResolvedUser, UserError, resolve_user

PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n"
GROUP = "root:x:0:\nwww:x:33:\nstaff:x:50:www\n"


def test_user_forms() -> None:
    assert resolve_user("", PASSWD, GROUP) == ResolvedUser(0, 0, "/root")
    assert resolve_user("www", PASSWD, GROUP) == ResolvedUser(33, 33, "/var/www", (50,))
    assert resolve_user("www:staff", PASSWD, GROUP).gid == 50
    assert resolve_user("1234", PASSWD, GROUP) == ResolvedUser(1234, 0)
    assert resolve_user("1234:99", PASSWD, GROUP).gid == 99


def test_user_unknown_names_refused() -> None:
    with pytest.raises(UserError, match="unable to find user nobody"):
        resolve_user("nobody", PASSWD, GROUP)
    with pytest.raises(UserError, match="unable to find group wheel"):
        resolve_user("www:wheel", PASSWD, GROUP)


def test_hostname_templates() -> None:
    ident = TaskIdentity("t1", "web.2.t1", 2, "s1", "web", "n1", "node-a", (("env", "prod"),))
    assert expand("{{.Service.Name}}-{{.Task.Slot}}", ident) == "web-2"
    assert expand("{{.Node.Hostname}}", ident) == "node-a"
    assert expand('{{index .Service.Labels "env"}}', ident) == "prod"
    with pytest.raises(TemplateError):
        expand("{{.Nope}}", ident)
