"""Shim start: a shim forked by the zygote (this tree) against a shim started as its own
`python -S -m shoal.agent.exec.shim` (how every task's shim started before the zygote),
interleaved in one invocation.

    .venv/bin/python bench/shim_start.py [--count 200]

Each shim is given a task dir without a config, so it answers `error cannot read ...` on
its stdout and exits: what is timed is everything a shim does before its handshake's first
word (interpreter start and imports for the separate process, a fork for the zygote's), up
to that word, and the CPU both ways: the separate shims' by `RUSAGE_CHILDREN` of this
process, the forked ones' by the zygote's `cutime + cstime` (/proc/<pid>/stat: the CPU of
the children it reaped), read after the last has been reaped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shoal.agent.exec.shimspawn import ShimZygote  # noqa: E402

ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
TICK = os.sysconf("SC_CLK_TCK")


def first_word(fd: int) -> bytes:
    out = b""
    while not out.endswith(b"\n"):
        chunk = os.read(fd, 256)
        if not chunk:
            break
        out += chunk
    return out


def separate(task_dir: str) -> float:
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-S", "-m", "shoal.agent.exec.shim", task_dir],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        cwd="/", env=ENV, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    word = first_word(proc.stdout.fileno())
    took = time.perf_counter() - began
    proc.stdout.close()
    proc.wait()
    assert word.startswith(b"error"), word
    return took


async def forked(zygote: ShimZygote, task_dir: str) -> float:
    began = time.perf_counter()
    null_in = os.open("/dev/null", os.O_RDONLY)
    out_r, out_w = os.pipe()
    null_err = os.open("/dev/null", os.O_WRONLY)
    try:
        await zygote.spawn(task_dir, null_in, out_w, null_err)
    finally:
        for fd in (null_in, out_w, null_err):
            os.close(fd)
    word = first_word(out_r)
    took = time.perf_counter() - began
    os.close(out_r)
    assert word.startswith(b"error"), word
    return took


def zygote_children_cpu(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rfind(")") + 2 :].split()
    return (int(fields[13]) + int(fields[14])) / TICK  # cutime, cstime


def wait_reaped(pid: int, deadline: float) -> None:
    """Until the zygote has no child left (each one reaped, so counted in its cutime)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    while children.read_text().strip():
        if time.monotonic() > deadline:
            raise TimeoutError("the zygote's children were not reaped")
        time.sleep(0.01)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "shoal")], check=True)
    walls: dict[str, list[float]] = {"separate": [], "zygote": []}
    zygote = ShimZygote(ENV)
    sep_cpu = 0.0
    with tempfile.TemporaryDirectory(prefix="shoal-shimbench-") as tmp:
        task_dir = os.path.join(tmp, "no-such-task")
        await forked(zygote, task_dir)  # the zygote's own start is not a shim's
        pid = zygote.pid
        assert pid is not None
        wait_reaped(pid, time.monotonic() + 10)
        zyg_before = zygote_children_cpu(pid)
        for _ in range(args.count):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            walls["separate"].append(separate(task_dir))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            sep_cpu += (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            walls["zygote"].append(await forked(zygote, task_dir))
        wait_reaped(pid, time.monotonic() + 10)
        zyg_cpu = zygote_children_cpu(pid) - zyg_before
        zygote.close()
    cpu = {"separate": sep_cpu / args.count, "zygote": zyg_cpu / args.count}
    print(f"load {os.getloadavg()[0]:.2f}; {args.count} shims each way, interleaved")
    print("| shim | wall p50 ms | wall p90 ms | CPU per shim ms |")
    print("|---|---|---|---|")
    for name, values in walls.items():
        values.sort()
        p90 = values[int(len(values) * 0.9)]
        print(f"| {name} | {statistics.median(values) * 1e3:.2f} | {p90 * 1e3:.2f} "
              f"| {cpu[name] * 1e3:.2f} |")  # fmt: skip
    ratio_wall = statistics.median(walls["zygote"]) / statistics.median(walls["separate"])
    ratio_cpu = cpu["zygote"] / cpu["separate"] if cpu["separate"] else float("nan")
    print(f"zygote / separate: wall {ratio_wall:.2f}x, CPU {ratio_cpu:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
