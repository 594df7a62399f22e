"""JSON codecs for Docker-shaped bodies.

Go's encoding/json matches object keys case-insensitively and clients rely on it (docker-py
sends `"Mode": {"replicated": ...}`), so decoding first rewrites keys to the canonical
spelling of the target struct, walking the struct's type information; map-typed fields
(labels, options) keep their keys untouched. Type errors and unknown fields become
`InvalidArgument` with msgspec's path (`... - at $.TaskTemplate.ContainerSpec`), except a
bad value of an enum dockerd checks itself, which gets dockerd's words (its
daemon/cluster/convert: `invalid RestartCondition: "sometimes"`), as the CLI prints them.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

from shoal.errors import InvalidArgument

__all__ = ["clone", "decode_body", "encode", "to_builtins"]

T = TypeVar("T")

_json_encoder = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    return _json_encoder.encode(obj)


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def clone(obj: T) -> T:
    """A deep copy of a struct (msgpack round trip; fast enough for store objects)."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(obj), type=type(obj))


def decode_body(raw: bytes | str, typ: type[T], what: str = "request body") -> T:
    """Decode a JSON body into `typ`, matching keys case-insensitively like Go does."""
    if isinstance(raw, bytes) and not raw.strip():
        raise InvalidArgument(f"{what}: empty body, expected a JSON object")
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidArgument(f"{what}: malformed JSON: {exc}") from exc
    return convert(data, typ, what)


_ENUM_ERROR = re.compile(r"Invalid enum value (.*) - at `\$\.(.+)`")
# the end of the value's path -> dockerd's message (daemon/cluster/convert, Go's %q)
_DOCKERD_ENUMS = {
    "RestartPolicy.Condition": "invalid RestartCondition: {q}",
    "NodeSpec.Role": "invalid Role: {q}",
    "NodeSpec.Availability": "invalid Availability: {q}",
    "EndpointSpec.Mode": "invalid ResolutionMode: {q}",
}


def _dockerd_words(message: str, typ: type) -> str | None:
    match = _ENUM_ERROR.fullmatch(message)
    if match is None:
        return None
    path = f"{typ.__name__}.{match.group(2)}"  # NodeSpec.Role, ServiceSpec.UpdateConfig.Order
    for suffix, words in _DOCKERD_ENUMS.items():
        if path == suffix or path.endswith("." + suffix):
            try:
                value = str(json.loads(match.group(1).replace("'", '"')))
            except ValueError:
                return None
            return words.format(q=json.dumps(value))
    return None


def convert(data: Any, typ: type[T], what: str = "request body") -> T:
    info = _type_info(typ)
    data = _canonical(data, info)
    try:
        return msgspec.convert(data, typ)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(_dockerd_words(str(exc), typ) or f"{what}: {exc}") from exc


_info_cache: dict[Any, mi.Type] = {}


def _type_info(typ: Any) -> mi.Type:
    info = _info_cache.get(typ)
    if info is None:
        info = _info_cache[typ] = mi.type_info(typ)
    return info


_names_cache: dict[type, dict[str, tuple[str, mi.Type]]] = {}


def _field_names(struct: mi.StructType) -> dict[str, tuple[str, mi.Type]]:
    names = _names_cache.get(struct.cls)
    if names is None:
        names = {f.encode_name.lower(): (f.encode_name, f.type) for f in struct.fields}
        _names_cache[struct.cls] = names
    return names


def _canonical(data: Any, info: mi.Type) -> Any:
    if isinstance(info, mi.UnionType):
        for member in info.types:
            if isinstance(member, mi.StructType | mi.ListType) and isinstance(data, dict | list):
                return _canonical(data, member)
        return data
    if isinstance(info, mi.StructType) and isinstance(data, dict):
        names = _field_names(info)
        out: dict[str, Any] = {}
        for key, value in data.items():
            match = names.get(key.lower()) if isinstance(key, str) else None
            if match is None:
                out[key] = value
            else:
                out[match[0]] = _canonical(value, match[1])
        return out
    if isinstance(info, mi.ListType) and isinstance(data, list):
        return [_canonical(item, info.item_type) for item in data]
    return data
