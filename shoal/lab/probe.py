"""A small client run inside a lab namespace: `python -m shoal.lab.probe http|udp ADDR:PORT`.

It sends COUNT requests, each on a new connection (HTTP) or a new socket (UDP), so that a
load balancer that picks per connection shows its choices, and prints one JSON line per
request: {"target", "ok", "status" (HTTP), "body" or "error"}. Bounded: every request has a
timeout and COUNT is capped, and the only targets are the ones given on the command line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys

__all__ = ["http_once", "main", "udp_once"]

MAX_COUNT = 1000


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host, int(port)


def http_once(target: str, path: str, timeout: float) -> dict[str, object]:
    host, port = _split(target)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return {"target": target, "ok": resp.status < 400, "status": resp.status, "body": body}
    except (OSError, http.client.HTTPException) as exc:
        return {"target": target, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


def udp_once(target: str, payload: bytes, timeout: float) -> dict[str, object]:
    host, port = _split(target)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(payload, (host, port))
            data, _ = sock.recvfrom(65536)
            return {"target": target, "ok": True, "body": data.decode(errors="replace")}
        except OSError as exc:
            return {"target": target, "ok": False, "error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shoal.lab.probe")
    parser.add_argument("proto", choices=["http", "udp"])
    parser.add_argument("targets", nargs="+", metavar="ADDR:PORT")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--path", default="/")
    parser.add_argument("--payload", default="hello")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    count = max(1, min(args.count, MAX_COUNT))
    failures = 0
    for target in args.targets:
        for _ in range(count):
            if args.proto == "http":
                result = http_once(target, args.path, args.timeout)
            else:
                result = udp_once(target, args.payload.encode(), args.timeout)
            failures += not result["ok"]
            print(json.dumps(result), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
