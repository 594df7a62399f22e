"""What this host offers to tasks: CPUs and memory, as NodeDescription.Resources reports them.

`host_resources()` reads `os.cpu_count()` and `/proc/meminfo` (MemTotal), as dockerd's
`NCPU`/`MemTotal`; `parse_meminfo` is the pure part. The scheduler places tasks by their
reservations against these figures.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["host_resources", "parse_meminfo"]


def parse_meminfo(text: str) -> int:
    """MemTotal of a /proc/meminfo text, in bytes (0 when absent)."""
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key.strip() == "MemTotal":
            fields = rest.split()
            if fields and fields[0].isdigit():
                unit = fields[1].lower() if len(fields) > 1 else "b"
                return int(fields[0]) * (1024 if unit == "kb" else 1)
    return 0


def host_resources(meminfo: Path = Path("/proc/meminfo")) -> dict[str, int]:
    """{"NanoCPUs": ..., "MemoryBytes": ...} of this host."""
    try:
        memory = parse_meminfo(meminfo.read_text())
    except OSError:
        memory = 0
    return {"NanoCPUs": (os.cpu_count() or 1) * 1_000_000_000, "MemoryBytes": memory}
