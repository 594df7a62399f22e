"""A line-protocol driver of `Overlay`, for labs and tests that program a namespace's
overlay from outside it:

    ip netns exec shoal-h1 python -m shoal.mesh.overlay.driver \\
        --underlay 198.18.0.11 --subnet 198.19.1.0/24 [--port 4789] [--vni 4096]

Each stdin line is a JSON request, answered by one JSON line on stdout:
    {"op": "apply", "peers": [{"node_id": .., "underlay": .., "subnet": ..}, ...]}
        -> {"ok": true, "ms": 1.9, "ops": ["neigh replace ...", ...], "mtu": 1450}
    {"op": "close"} -> {"ok": true, "ms": 1.2}
A failure answers {"ok": false, "error": "..."}; end of input ends the driver (the device
stays, as it would when a daemon exits).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from shoal.errors import ShoalError
from shoal.mesh.jsonlines import serve_json_lines
from shoal.mesh.overlay.model import OverlayPeer
from shoal.mesh.overlay.vxlan import Overlay

__all__ = ["handle", "main"]


async def handle(overlay: Overlay, request: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        op = request.get("op")
        if op == "apply":
            peers = [OverlayPeer(**p) for p in request["peers"]]
            await overlay.apply(peers)
            reply: dict[str, Any] = {
                "ok": True, "ops": [str(o) for o in overlay.last_ops], "mtu": overlay.mtu,
            }
        elif op == "close":
            await overlay.close()
            reply = {"ok": True}
        else:
            reply = {"ok": False, "error": f"unknown op {op!r}"}
    except (ShoalError, KeyError, TypeError, ValueError) as exc:
        reply = {"ok": False, "error": str(exc)}
    reply["ms"] = round((time.perf_counter() - start) * 1000, 3)
    return reply


async def _serve(overlay: Overlay) -> None:
    await serve_json_lines(lambda request: handle(overlay, request))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shoal.mesh.overlay.driver")
    parser.add_argument("--underlay", required=True)
    parser.add_argument("--subnet", required=True)
    parser.add_argument("--vni", type=int, default=4096)
    parser.add_argument("--port", type=int, default=4789)
    parser.add_argument("--device", default="shoal.4096")
    args = parser.parse_args(argv)
    overlay = Overlay(args.underlay, args.subnet, args.vni, args.port, args.device)
    asyncio.run(_serve(overlay))


if __name__ == "__main__":
    main()
