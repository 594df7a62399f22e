"""CPU per 2377 call: a ClusterServer and a ClusterClient in one process (loopback, mutual
TLS), this checkout against another checkout (`--against`), same invocation.

Rows: sequential unary calls (a heartbeat: Empty -> HeartbeatResponse), 64 concurrent
unary calls, a server stream's messages (a session's: 2 KiB each), and a 4 MiB unary
request (a snapshot on Raft/Send). Each row: calls (or messages) per second of wall time
and CPU ms of the process (all threads: gRPC's poller included) per call or message.

    .venv/bin/python bench/rpc_calls.py [--against /work/wt-rpc-base] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

_CHILD = r"""
import asyncio, datetime, json, sys, time
import msgspec
from shoal.ca.certs import make_csr, new_key, sign_node_csr
from shoal.ca.files import NodeTLS
from shoal.ca.root import RootCA
from shoal.cluster.client import ClusterClient
from shoal.cluster.server import MEMBERS, ClusterServer
from shoal.cluster.wire import Empty, HeartbeatResponse, RaftRequest, RaftResponse

CALLS = int(sys.argv[1])

class Chunk(msgspec.Struct):
    data: bytes

def tls(ca, node):
    key = new_key()
    cert = sign_node_csr(ca, make_csr(key), node, "manager", "c1", datetime.timedelta(days=1),
                         datetime.datetime.now(datetime.UTC))
    return NodeTLS(ca.cert_pem, cert, key)

async def main():
    ca = RootCA.generate("c1")
    server = ClusterServer(tls(ca, "m1"))

    async def beat(req, caller):
        return HeartbeatResponse(5.0)

    async def send(req, caller):
        return RaftResponse()

    async def chunks(req, caller):
        for _ in range(CALLS):
            yield Chunk(bytes(2048))

    server.add_unary("T/Beat", Empty, MEMBERS, beat)
    server.add_unary("T/Send", RaftRequest, MEMBERS, send)
    server.add_stream("T/Chunks", Empty, MEMBERS, chunks)
    port = await server.start("127.0.0.1", 0)
    client = ClusterClient(f"127.0.0.1:{port}", ca.cert_pem, tls(ca, "m2"))
    await client.call("T/Beat", Empty(), HeartbeatResponse)  # connected, warm
    rows = {}

    async def measure(name, n, body):
        wall, cpu = time.perf_counter(), time.process_time()
        await body()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows[name] = {"per_s": n / wall, "cpu_ms": 1000 * cpu / n}

    async def sequential():
        for _ in range(CALLS):
            await client.call("T/Beat", Empty(), HeartbeatResponse)

    async def concurrent():
        sem = asyncio.Semaphore(64)
        async def one():
            async with sem:
                await client.call("T/Beat", Empty(), HeartbeatResponse)
        await asyncio.gather(*(one() for _ in range(CALLS)))

    async def streamed():
        got = 0
        async for _ in client.stream("T/Chunks", Empty(), Chunk):
            got += 1
        assert got == CALLS

    async def big():
        for _ in range(20):
            await client.call("T/Send", RaftRequest(bytes(4 << 20)), RaftResponse, timeout=30)

    await measure("unary, 1 at a time", CALLS, sequential)
    await measure("unary, 64 at a time", CALLS, concurrent)
    await measure("server stream, 2 KiB messages", CALLS, streamed)
    await measure("unary, 4 MiB request", 20, big)
    await client.close()
    await server.stop()
    print(json.dumps(rows))

asyncio.run(main())
"""


def run(tree: Path, calls: int) -> dict[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(calls)], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, default=None)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    trees = {"this checkout": HERE}
    if args.against is not None:
        trees["against"] = args.against.resolve()
    results = {name: run(tree, args.calls) for name, tree in trees.items()}
    print(f"load average {os.getloadavg()[0]:.1f}; {args.calls} calls/messages per row")
    print("| code | row | per s | CPU ms each | CPU vs against |")
    print("|---|---|---|---|---|")
    base = results.get("against", {})
    for name, rows in results.items():
        for row, r in rows.items():
            ratio = f"{r['cpu_ms'] / base[row]['cpu_ms']:.2f}x" if row in base else ""
            print(f"| {name} | {row} | {r['per_s']:.0f} | {r['cpu_ms']:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
