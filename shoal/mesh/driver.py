"""A line-protocol driver of `KernelDataPlane`, for labs and tests that program the mesh of a
namespace from outside it:

    ip netns exec shoal-h1 python -m shoal.mesh.driver [--table shoal]

Each stdin line is a JSON request, answered by one JSON line on stdout:
    {"op": "apply", "state": <MeshState.to_dict()>}  -> {"ok": true, "ms": 3.1, "script": "..."}
    {"op": "close"}                                  -> {"ok": true, "ms": 1.2}
A failure answers {"ok": false, "error": "..."}; end of input ends the driver (the table stays).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from shoal.errors import ShoalError
from shoal.mesh.jsonlines import serve_json_lines
from shoal.mesh.kernel import KernelDataPlane
from shoal.mesh.model import MeshState

__all__ = ["handle", "main"]


async def handle(plane: KernelDataPlane, request: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        op = request.get("op")
        if op == "apply":
            plane.last_script = ""
            await plane.apply(MeshState.from_dict(request["state"]))
            reply: dict[str, Any] = {"ok": True, "script": plane.last_script}
        elif op == "close":
            await plane.close()
            reply = {"ok": True}
        else:
            reply = {"ok": False, "error": f"unknown op {op!r}"}
    except (ShoalError, KeyError, TypeError, ValueError) as exc:
        reply = {"ok": False, "error": str(exc)}
    reply["ms"] = round((time.perf_counter() - start) * 1000, 3)
    return reply


async def _serve(table: str) -> None:
    plane = KernelDataPlane(table=table)
    await serve_json_lines(lambda request: handle(plane, request))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shoal.mesh.driver")
    parser.add_argument("--table", default="shoal")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.table))


if __name__ == "__main__":
    main()
