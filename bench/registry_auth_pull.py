"""What registry auth costs a first pull: the `whoami` image pulled by an ImageStore from three
docker-registry instances on loopback, side by side per round: no auth (the baseline),
htpasswd basic auth, and token auth (Bearer challenge -> JWT from shoal.lab.tokenauth -> retry).

    .venv/bin/python bench/registry_auth_pull.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from shoal.images import ImageStore, RegistryAuth
from shoal.lab import images as test_images
from shoal.lab import registry
from shoal.lab.tokenauth import TokenServer, TokenSigner

USERS = {"alice": "s3cret"}
ALICE = RegistryAuth(username="alice", password="s3cret")


def _free_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@contextmanager
def _registry(directory: Path, mode: str) -> Iterator[str]:
    addr = _free_addr()
    with ExitStack() as stack:
        htpasswd, token = None, None
        if mode == "htpasswd":
            htpasswd = registry.write_htpasswd(directory / "htpasswd", USERS)
        if mode == "token":
            signer = TokenSigner.generate("bench-issuer")
            realm = stack.enter_context(TokenServer(signer, USERS)).realm
            bundle = signer.write_bundle(directory / "root.pem")
            token = registry.TokenAuth(realm, "bench", "bench-issuer", bundle)
        path = registry.write_config(directory / "registry", addr, htpasswd, token)
        pid = registry.start(path, addr, directory / "registry.log")
        stack.callback(registry.stop, pid)
        yield addr


async def _pull(root: Path, ref: str, addr: str, auth: RegistryAuth | None) -> float:
    store = ImageStore(root, insecure_registries=[addr])
    start = time.perf_counter()
    await store.pull(ref, auth)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    modes = ("none", "htpasswd", "token")
    times: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        addrs = {}
        for mode in modes:
            (Path(tmp) / mode).mkdir()
            addrs[mode] = stack.enter_context(_registry(Path(tmp) / mode, mode))
            argv = test_images.push_argv("whoami", f"{addrs[mode]}/bench/whoami:1")
            subprocess.run([*argv[:3], "--dest-creds", "alice:s3cret", *argv[3:]], check=True)
        for i in range(args.rounds):
            for mode in modes:
                root = Path(tmp) / f"store-{mode}-{i}"  # a fresh store: every pull is a first
                auth = None if mode == "none" else ALICE
                ref = f"{addrs[mode]}/bench/whoami:1"
                times[mode].append(asyncio.run(_pull(root, ref, addrs[mode], auth)))
    base = statistics.median(times["none"])
    print(f"whoami first pulls by an ImageStore on loopback, {args.rounds} rounds each")
    for mode in modes:
        p50 = statistics.median(times[mode])
        print(f"{mode:9}: p50 {p50 * 1000:.0f} ms  ratio vs no auth {p50 / base:.2f}")


if __name__ == "__main__":
    main()
