"""Parsers of the container flags of `service create|update`: pure, docker's syntax and words.

`--mount` (csv `type=bind|volume|tmpfs,source=...,target=...`), `--secret`/`--config` (short
`NAME` or long `source=NAME,target=...,uid=,gid=,mode=`), `--ulimit NAME=SOFT[:HARD]`,
`--sysctl KEY=VALUE`, `--cap-add/--cap-drop` (normalised to `CAP_*` like docker's
`EffectiveCapAddCapDrop`). Each parser raises ValueError with docker's message; the flag
machinery (service_flags.py) wraps it as cobra does (`invalid argument ... for "--mount"`).
"""

from __future__ import annotations

import csv
from typing import Any

from shoal.cli.opts import parse_memory

__all__ = [
    "ULIMIT_NAMES",
    "normalize_capability",
    "parse_config",
    "parse_mount",
    "parse_secret",
    "parse_sysctl",
    "parse_ulimit",
]

ULIMIT_NAMES = (
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
)  # fmt: skip
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _csv_fields(value: str) -> list[str]:
    try:
        rows = list(csv.reader([value]))
    except csv.Error as exc:
        raise ValueError(str(exc)) from None
    return rows[0] if rows else []


def _go_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def _key_value(field: str) -> tuple[str, str]:
    key, sep, value = field.partition("=")
    if not sep:
        raise ValueError(f"invalid field '{field}' must be a key=value pair")
    return key.lower().strip(), value


def _sub(mount: dict[str, Any], name: str) -> dict[str, Any]:
    child: dict[str, Any] = mount.setdefault(name, {})
    return child


def _mount_field(mount: dict[str, Any], key: str, value: str, whole: str) -> None:
    if key == "type":
        mount["Type"] = value
    elif key in ("source", "src"):
        mount["Source"] = value
    elif key in ("target", "dst", "destination"):
        mount["Target"] = value
    elif key in ("readonly", "ro"):
        mount["ReadOnly"] = _go_bool(key, value)
    elif key == "consistency":
        mount["Consistency"] = value
    elif key == "bind-propagation":
        _sub(mount, "BindOptions")["Propagation"] = value
    elif key == "bind-nonrecursive":
        _sub(mount, "BindOptions")["NonRecursive"] = _go_bool(key, value)
    elif key == "bind-create-mountpoint":
        _sub(mount, "BindOptions")["CreateMountpoint"] = _go_bool(key, value)
    elif key == "volume-nocopy":
        _sub(mount, "VolumeOptions")["NoCopy"] = _go_bool(key, value)
    elif key == "volume-label":
        name, _, label = value.partition("=")
        _sub(mount, "VolumeOptions").setdefault("Labels", {})[name] = label
    elif key == "volume-driver":
        _sub(_sub(mount, "VolumeOptions"), "DriverConfig")["Name"] = value
    elif key == "volume-opt":
        name, _, opt = value.partition("=")
        driver = _sub(_sub(mount, "VolumeOptions"), "DriverConfig")
        driver.setdefault("Options", {})[name] = opt
    elif key == "volume-subpath":
        _sub(mount, "VolumeOptions")["Subpath"] = value
    elif key == "tmpfs-size":
        try:
            _sub(mount, "TmpfsOptions")["SizeBytes"] = parse_memory(value)
        except ValueError:
            raise ValueError(f"invalid value for {key}: {value}") from None
    elif key == "tmpfs-mode":
        try:
            _sub(mount, "TmpfsOptions")["Mode"] = int(value, 8)
        except ValueError:
            raise ValueError(f"invalid value for {key}: {value}") from None
    else:
        raise ValueError(f"unexpected key '{key}' in '{whole}'")


def parse_mount(value: str) -> dict[str, Any]:
    """One `--mount` value as a Docker `Mount` (the type defaults to volume, as docker's)."""
    mount: dict[str, Any] = {"Type": "volume"}
    for field in _csv_fields(value):
        key, sep, _ = field.partition("=")
        if not sep and key.lower() in ("readonly", "ro"):
            mount["ReadOnly"] = True
            continue
        if not sep and key.lower() == "volume-nocopy":
            _sub(mount, "VolumeOptions")["NoCopy"] = True
            continue
        key, raw = _key_value(field)
        _mount_field(mount, key, raw, field)
    kind = mount["Type"]
    if not kind:
        raise ValueError("type is required")
    if not mount.get("Target"):
        raise ValueError("target is required")
    for options, prefix, owner in (
        ("VolumeOptions", "volume", "volume"),
        ("BindOptions", "bind", "bind"),
        ("TmpfsOptions", "tmpfs", "tmpfs"),
    ):
        if options in mount and kind != owner:
            raise ValueError(f"cannot mix '{prefix}-*' options with mount type '{kind}'")
    return mount


def _reference(value: str, what: str, name_key: str) -> dict[str, Any]:
    fields = _csv_fields(value)
    file: dict[str, Any] = {"Name": "", "UID": "0", "GID": "0", "Mode": 0o444}
    ref: dict[str, Any] = {"File": file, name_key: ""}
    if len(fields) == 1 and "=" not in fields[0]:
        file["Name"] = ref[name_key] = fields[0]
        return ref
    for field in fields:
        key, raw = _key_value(field)
        if key in ("source", "src"):
            ref[name_key] = raw
        elif key == "target":
            file["Name"] = raw
        elif key == "uid":
            file["UID"] = raw
        elif key == "gid":
            file["GID"] = raw
        elif key == "mode":
            try:
                file["Mode"] = _go_uint(raw)
            except ValueError:
                raise ValueError(
                    f'invalid mode specified: strconv.ParseUint: parsing "{raw}": invalid syntax'
                ) from None
        else:
            raise ValueError(f"invalid field in {what} request: {key}")
    if not ref[name_key]:
        raise ValueError("source is required")
    if not file["Name"]:
        file["Name"] = ref[name_key]
    return ref


def _go_uint(text: str) -> int:
    """strconv.ParseUint(text, 0, 32): 0o/0/0x/0b prefixes."""
    body = text.replace("_", "")
    if len(body) > 1 and body[0] == "0" and body[1].isdigit():
        number = int(body[1:], 8)
    else:
        number = int(body, 0)
    if number < 0 or number >= 1 << 32:
        raise ValueError(text)
    return number


def parse_secret(value: str) -> dict[str, Any]:
    """A `--secret` value as a SecretReference with the name (the ID is resolved later)."""
    return _reference(value, "secret", "SecretName")


def parse_config(value: str) -> dict[str, Any]:
    return _reference(value, "config", "ConfigName")


def parse_ulimit(value: str) -> dict[str, Any]:
    """go-units ParseUlimit: `nofile=1024[:2048]`."""
    name, sep, limits = value.partition("=")
    if not sep:
        raise ValueError(f"invalid ulimit argument: {value}")
    if name not in ULIMIT_NAMES:
        raise ValueError(f"invalid ulimit type: {name}")
    parts = limits.split(":")
    if len(parts) > 2:
        raise ValueError(
            f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`"
        )
    numbers = []
    for part in parts:
        try:
            numbers.append(int(part))
        except ValueError:
            raise ValueError(f'strconv.ParseInt: parsing "{part}": invalid syntax') from None
    soft, hard = numbers[0], numbers[-1]
    if soft > hard:
        raise ValueError(
            f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )
    return {"Name": name, "Soft": soft, "Hard": hard}


def parse_sysctl(value: str) -> str:
    if "=" not in value or not value.partition("=")[0]:
        raise ValueError(f"invalid sysctl value {value!r}: must be KEY=VALUE")
    return value


def normalize_capability(value: str) -> str:
    """docker's normalizeCap: upper case, `CAP_` prefixed, `ALL` kept as is."""
    cap = value.strip().upper()
    if not cap:
        raise ValueError("capability name cannot be empty")
    if cap == "ALL" or cap.startswith("CAP_"):
        return cap
    return "CAP_" + cap
