"""The stdin/stdout loop of the line-protocol drivers (`shoal.mesh.driver`,
`shoal.mesh.overlay.driver`): one JSON request a line in, one JSON reply a line out, a line
that is not JSON answered {"ok": false, "error": "bad JSON: ..."}, end of input ends it."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["serve_json_lines"]


async def serve_json_lines(
    handle: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            reply: dict[str, Any] = {"ok": False, "error": f"bad JSON: {exc}"}
        else:
            reply = await handle(request)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
