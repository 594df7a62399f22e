"""`service logs` stream decoding and line prefixes, like docker's.

The daemon answers with Docker's multiplexed stream: frames of an 8-byte header
`[stream, 0, 0, 0, length (uint32 big-endian)]` and a payload; stream 1 is stdout, 2 stderr,
3 an error that ends the command. Each payload is one line `[<RFC3339Nano> ]<details> <msg>`
whose details (`k=v` pairs, URL-escaped, comma-separated) name the node, service and task;
`LogPrefixer` turns them into docker's `web.1.<task12>@<node>    | ` prefix, looking names
up once per task. `FrameParser` and `split_line` are pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from shoal.cli.common import Resolver
from shoal.cli.context import ApiClient
from shoal.cli.format import truncate_id
from shoal.errors import ShoalError

__all__ = ["FrameParser", "LogOptions", "LogPrefixer", "parse_details", "split_line"]

STDOUT, STDERR, SYSTEMERR = 1, 2, 3
_KINDS = ("node", "service", "task")


class FrameParser:
    """Incremental demultiplexer: feed bytes, get complete (stream, payload) frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buf) >= 8:
            stream = self._buf[0]
            size = int.from_bytes(self._buf[4:8], "big")
            if len(self._buf) < 8 + size:
                break
            payload = bytes(self._buf[8 : 8 + size])
            del self._buf[: 8 + size]
            if stream == SYSTEMERR:
                raise ShoalError(f"error from daemon in stream: {payload.decode(errors='replace')}")
            if stream not in (0, STDOUT, STDERR):
                raise ShoalError(f"Unrecognized input header: {stream}")
            frames.append((STDERR if stream == STDERR else STDOUT, payload))
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


def parse_details(text: str) -> dict[str, str]:
    """docker's logdetails.Parse: `k=v,k2=v2` with URL-escaped keys and values."""
    out: dict[str, str] = {}
    if not text:
        return out
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ShoalError("invalid details format")
        out[unquote_plus(key)] = unquote_plus(value)
    return out


def split_line(payload: str, timestamps: bool) -> tuple[str, dict[str, str], str]:
    """(timestamp or "", details, message) of one payload, like docker's logWriter."""
    parts = payload.split(" ", 2 if timestamps else 1)
    if len(parts) != (3 if timestamps else 2):
        raise ShoalError(f"invalid context in log message: {payload}")
    if timestamps:
        return parts[0], parse_details(parts[1]), parts[2]
    return "", parse_details(parts[0]), parts[1]


@dataclass
class LogOptions:
    timestamps: bool = False
    details: bool = False
    no_task_ids: bool = False
    no_trunc: bool = False
    no_resolve: bool = False


@dataclass
class LogPrefixer:
    client: ApiClient
    opts: LogOptions
    padding: int = 1
    _cache: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._resolver = Resolver(self.client, self.opts.no_resolve)

    def format(self, payload: str) -> str:
        stamp, details, message = split_line(payload, self.opts.timestamps)
        context = tuple(details.pop(f"com.docker.swarm.{kind}.id", None) for kind in _KINDS)
        for key, value in zip(_KINDS, context, strict=True):
            if value is None:
                raise ShoalError(f"missing {key} id in details: {details}")
        prefix = self._prefix(*(str(v) for v in context))
        out = f"{stamp} " if self.opts.timestamps else ""
        out += prefix + "    | "
        if self.opts.details:
            out += ",".join(sorted(f"{k}={v}" for k, v in details.items())) + " "
        return out + message

    def _prefix(self, node_id: str, service_id: str, task_id: str) -> str:
        key = (node_id, service_id, task_id)
        if key not in self._cache:
            node = self._resolver.node(node_id)
            service = self._resolver.service(service_id)
            task = self.client.get(f"/tasks/{task_id}")
            slot = int(task.get("Slot") or 0)
            name = f"{service}.{slot}"
            if not self.opts.no_task_ids:
                ident = str(task.get("ID") or task_id)
                name += "." + (ident if self.opts.no_trunc else truncate_id(ident))
            pad = " " * max(0, self.padding - len(str(slot)))
            self._cache[key] = f"{name}@{node}{pad}"
        return self._cache[key]
