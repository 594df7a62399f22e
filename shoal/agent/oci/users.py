"""Docker's `User` rules against an image's /etc/passwd and /etc/group (pure: text in)."""

from __future__ import annotations

from dataclasses import dataclass

from shoal.errors import InvalidArgument

__all__ = ["ProcessUser", "UnknownUser", "numeric_user", "resolve_user"]


class UnknownUser(InvalidArgument):
    """A user or group name the image's /etc/passwd or /etc/group does not have."""


@dataclass(frozen=True)
class ProcessUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


def _entries(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _find(entries: list[list[str]], name: str, what: str) -> list[str]:
    for fields in entries:
        if len(fields) >= 3 and (fields[0] == name or (name.isdigit() and fields[2] == name)):
            return fields
    raise UnknownUser(
        f"unable to find {what} {name}: no matching entries in "
        f"{'passwd' if what == 'user' else 'group'} file"
    )


def resolve_user(
    spec: str, passwd: str, group: str, groups: list[str] | None = None
) -> ProcessUser:
    """`name`, `uid`, `name:group`, `uid:gid`; empty means root. Docker's error words."""
    name, _, grp = (spec or "0").partition(":")
    users = _entries(passwd)
    home = "/"
    if name.isdigit():
        uid = int(name)
        gid = 0
        for fields in users:
            if len(fields) >= 6 and fields[2] == name:
                gid, home = int(fields[3]), fields[5] or "/"
                break
    else:
        fields = _find(users, name, "user")
        uid, gid = int(fields[2]), int(fields[3]) if len(fields) > 3 and fields[3].isdigit() else 0
        home = fields[5] if len(fields) > 5 and fields[5] else "/"
    group_entries = _entries(group)
    if grp:
        gid = int(grp) if grp.isdigit() else int(_find(group_entries, grp, "group")[2])
    extra: list[int] = []
    for g in groups or []:
        extra.append(int(g) if g.isdigit() else int(_find(group_entries, g, "group")[2]))
    if not name.isdigit():
        for fields in group_entries:
            if len(fields) >= 4 and name in fields[3].split(",") and int(fields[2]) not in extra:
                extra.append(int(fields[2]))
    return ProcessUser(uid, gid, tuple(extra), home)


def numeric_user(spec: str, passwd: str, group: str) -> str:
    """`uid:gid` for runc (`docker exec -u NAME[:GROUP]`); numeric specs pass unchanged."""
    if all(part.isdigit() for part in spec.split(":")):
        return spec
    user = resolve_user(spec, passwd, group)
    return f"{user.uid}:{user.gid}"
