"""Resolve a Docker `User` ("name", "uid", "name:group", "uid:gid") against an image's
/etc/passwd and /etc/group text. Pure: the caller reads the files."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ResolvedUser", "UserError", "resolve_user"]


class UserError(ValueError):
    pass


@dataclass(frozen=True)
class ResolvedUser:
    uid: int
    gid: int
    home: str = "/"
    additional_gids: tuple[int, ...] = ()


def _entries(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _find_user(passwd: str, who: str) -> list[str] | None:
    for row in _entries(passwd):
        if len(row) >= 4 and (row[0] == who or row[2] == who):
            return row
    return None


def _find_group(group: str, who: str) -> int | None:
    for row in _entries(group):
        if len(row) >= 3 and (row[0] == who or row[2] == who):
            return int(row[2])
    return None


def _supplementary(group: str, name: str, primary: int) -> tuple[int, ...]:
    gids = []
    for row in _entries(group):
        if len(row) >= 4 and name in row[3].split(",") and int(row[2]) != primary:
            gids.append(int(row[2]))
    return tuple(gids)


def resolve_user(spec: str, passwd: str, group: str) -> ResolvedUser:
    """Docker's rules: empty is root; a numeric uid need not exist in passwd; a name must;
    the group defaults to the user's primary group (0 for an unknown numeric uid)."""
    if not spec:
        spec = "0"
    user_part, _, group_part = spec.partition(":")
    row = _find_user(passwd, user_part)
    if row is not None:
        uid, gid, home = int(row[2]), int(row[3]), row[5] if len(row) > 5 else "/"
        name = row[0]
    elif user_part.isdigit():
        uid, gid, home, name = int(user_part), 0, "/", ""
    else:
        raise UserError(f"unable to find user {user_part}: no matching entries in passwd file")
    if group_part:
        found = _find_group(group, group_part)
        if found is None:
            if not group_part.isdigit():
                raise UserError(
                    f"unable to find group {group_part}: no matching entries in group file"
                )
            found = int(group_part)
        gid = found
    extra = _supplementary(group, name, gid) if name else ()
    return ResolvedUser(uid, gid, home or "/", extra)
