"""Parsers for docker CLI flag values: pure, each raises ValueError with docker's wording.

`FlagError` wraps such a ValueError the way cobra/pflag print it
(`invalid argument "V" for "-p, --publish" flag: REASON`), so bad flags are reported before
anything is sent. Port specs follow docker's `PortOpt` (long `published=P,target=T,...` and
short `[P:]T[/proto]` with ranges), sizes go-units' `RAMInBytes`, CPUs `NanoCPUs`.
"""

from __future__ import annotations

import os
import re
from typing import Any

from shoal.errors import InvalidArgument

__all__ = [
    "FlagError",
    "parse_cpus",
    "parse_env",
    "parse_filters",
    "parse_int",
    "parse_label",
    "parse_memory",
    "parse_placement_pref",
    "parse_port",
    "parse_uint",
    "to_map",
]


class FlagError(InvalidArgument):
    """A flag value the CLI refuses; `flag` is cobra's spelling (`-p, --publish`)."""

    def __init__(self, flag: str, value: str, reason: str) -> None:
        super().__init__(f'invalid argument "{value}" for "{flag}" flag: {reason}')
        self.flag = flag
        self.value = value
        self.reason = reason


def _go_int(text: str, signed: bool, bits: int) -> int:
    func = "ParseInt" if signed else "ParseUint"
    body = text[1:] if signed and text[:1] in "+-" else text
    base = 10
    digits = body.replace("_", "")
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", digits):
        base = 16
    elif re.fullmatch(r"0[bB][01]+", digits):
        base = 2
    elif re.fullmatch(r"0[oO]?[0-7]+", digits):
        base, digits = 8, digits.lstrip("0oO") or "0"
    elif not re.fullmatch(r"[0-9]+", digits):
        raise ValueError(f'strconv.{func}: parsing "{text}": invalid syntax')
    value = int(digits, base) * (-1 if text[:1] == "-" else 1)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= value <= high:
        raise ValueError(f'strconv.{func}: parsing "{text}": value out of range')
    return value


def parse_uint(text: str, bits: int = 64) -> int:
    """Go's `strconv.ParseUint(text, 0, bits)` (base prefixes allowed)."""
    return _go_int(text, False, bits)


def parse_int(text: str, bits: int = 64) -> int:
    """Go's `strconv.ParseInt(text, 0, bits)`."""
    return _go_int(text, True, bits)


# --- ports -------------------------------------------------------------------------------

# patterns are compiled when first used (re's cache), not when every command imports this
_LONG = r"\w+=\w+(,\w+=\w+)*"


def _port_number(text: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(f"invalid {what} ({text}): value must be an integer: invalid syntax")
    value = int(text)
    if value > 65535:
        raise ValueError(f"invalid {what} ({text}): value must be an integer: value out of range")
    return value


def _parse_long_port(value: str) -> dict[str, Any]:
    import csv  # only here (issue 13: not imported by every command)

    fields = next(csv.reader([value]), [])
    port: dict[str, Any] = {"Protocol": "tcp", "PublishMode": "ingress"}
    for field in fields:
        key, sep, val = field.lower().partition("=")
        if not sep or not key:
            raise ValueError(f"invalid field: {field}")
        if key == "protocol":
            if val not in ("tcp", "udp", "sctp"):
                raise ValueError(f"invalid protocol value '{val}'")
            port["Protocol"] = val
        elif key == "mode":
            if val not in ("ingress", "host"):
                raise ValueError(
                    f"invalid publish mode value ({val}): must be either 'ingress' or 'host'"
                )
            port["PublishMode"] = val
        elif key == "target":
            port["TargetPort"] = _port_number(val, "target port")
        elif key == "published":
            port["PublishedPort"] = _port_number(val, "published port")
        else:
            raise ValueError(f"invalid field key: {key}")
    if not port.get("TargetPort"):
        raise ValueError("missing mandatory field 'target'")
    # Go's omitempty: a published port of 0 (pick one from the dynamic range) is left out
    return _short(
        port["Protocol"], port["TargetPort"], port.get("PublishedPort", 0), port["PublishMode"]
    )


def _port_range(text: str) -> tuple[int, int]:
    if not text:
        raise ValueError("empty string specified for ports.")
    start, sep, end = text.partition("-")
    try:
        low = _port_number(start, "port")
        high = _port_number(end, "port") if sep else low
    except ValueError as exc:
        raise ValueError(f"invalid port range: {text}") from exc
    if high < low:
        raise ValueError(f"invalid range specified for port: {text}")
    return low, high


def _parse_short_port(value: str) -> list[dict[str, Any]]:
    parts = value.split(":")
    container = parts[-1]
    host = parts[-2] if len(parts) >= 2 else ""
    ip = ":".join(parts[:-2]) if len(parts) >= 3 else ""
    container, _, proto = container.partition("/")
    proto = proto or "tcp"
    if ip:
        addr = ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip
        import ipaddress

        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise ValueError("invalid IP address: " + addr) from None
        raise ValueError("hostip is not supported")
    if not container:
        raise ValueError(f"no port specified: {value}<empty>")
    try:
        start, end = _port_range(container)
    except ValueError:
        raise ValueError("invalid containerPort: " + container) from None
    hstart = hend = 0
    if host:
        try:
            hstart, hend = _port_range(host)
        except ValueError:
            raise ValueError("invalid hostPort: " + host) from None
        if end - start != hend - hstart and end != start:
            raise ValueError(
                f"invalid ranges specified for container and host Ports: {container} and {host}"
            )
    if proto.lower() not in ("tcp", "udp", "sctp"):
        raise ValueError("invalid proto: " + proto)
    proto = proto.lower()
    out: list[dict[str, Any]] = []
    if end != start or not host or hend == hstart:
        for offset, target in enumerate(range(start, end + 1)):
            published = hstart + offset if host else 0
            out.append(_short(proto, target, published))
    else:  # one container port, a range of published ports
        out.extend(_short(proto, start, p) for p in range(hstart, hend + 1))
    return out


def _short(proto: str, target: int, published: int, mode: str = "ingress") -> dict[str, Any]:
    port: dict[str, Any] = {"Protocol": proto, "TargetPort": target}
    if published:
        port["PublishedPort"] = published
    port["PublishMode"] = mode
    return port


def parse_port(value: str) -> list[dict[str, Any]]:
    """EndpointPortConfig dicts (keys as docker sends them, zero values left out)."""
    if re.search(_LONG, value):
        return [_parse_long_port(value)]
    return _parse_short_port(value)


# --- key/value lists ----------------------------------------------------------------------


def parse_label(value: str) -> str:
    key = value.partition("=")[0].strip()
    if not key:
        raise ValueError(f"invalid label '{value}': empty name")
    if any(c.isspace() for c in key):
        raise ValueError(f"label '{key}' contains whitespaces")
    return value


def parse_env(value: str, environ: dict[str, str] | None = None) -> str:
    """`K=V` as is; a bare `K` takes the caller's value when set (docker's ValidateEnv)."""
    key, sep, _ = value.partition("=")
    if not key:
        raise ValueError(f"invalid environment variable: {value}")
    if sep:
        return value
    env = os.environ if environ is None else environ
    return f"{key}={env[key]}" if key in env else value


def to_map(values: list[str]) -> dict[str, str]:
    """docker's ConvertKVStringsToMap: `k=v` -> {k: v}, `k` -> {k: ""}."""
    out: dict[str, str] = {}
    for item in values:
        key, _, val = item.partition("=")
        out[key] = val
    return out


def parse_filters(values: list[str] | tuple[str, ...]) -> dict[str, dict[str, bool]]:
    """`-f k=v` flags as the Engine API `filters` object: {"k": {"v": true}}."""
    out: dict[str, dict[str, bool]] = {}
    for value in values:
        if not value:
            continue
        if "=" not in value:
            raise ValueError("bad format of filter (expected name=value)")
        name, _, val = value.partition("=")
        out.setdefault(name.strip().lower(), {})[val.strip()] = True
    return out


def parse_placement_pref(value: str) -> dict[str, Any]:
    strategy, sep, arg = value.partition("=")
    if not sep or not strategy:
        raise ValueError('placement preference must be of the format "<strategy>=<arg>"')
    if strategy != "spread":
        raise ValueError(f"unsupported placement preference {strategy} (only spread is supported)")
    return {"Spread": {"SpreadDescriptor": arg}}


# --- resources ----------------------------------------------------------------------------

_SIZE = r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$"


def parse_memory(value: str) -> int:
    """go-units RAMInBytes: `512m`, `1g`, `1.5GiB` (1024-based)."""
    from decimal import Decimal  # not at import: `service ls` has no use for it

    match = re.match(_SIZE, value)
    if match is None:
        raise ValueError(f"invalid size: '{value}'")
    number = Decimal(match.group(1)) if match.group(1).count(".") <= 1 else None
    if number is None:
        raise ValueError(f"invalid size: '{value}'")
    power = "kmgtp".find(match.group(2).lower()) + 1 if match.group(2) else 0
    return int(number * (1024**power))


def parse_cpus(value: str) -> int:
    """docker's NanoCPUs: `0.5` -> 500000000; more than 9 decimals is refused."""
    from decimal import Decimal, InvalidOperation

    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"failed to parse {value} as a rational number") from None
    nano = number * 1_000_000_000
    if nano != nano.to_integral_value():
        raise ValueError("value is too precise")
    return int(nano)
