"""Crash consistency: a writer process is killed (SIGKILL) at random moments; every time,
the reopened storage loads cleanly and holds exactly the state after its last
acknowledged write, or after the one write it had begun (committed, not yet answered)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from shoal.manager.raft import SQLiteStorage
from tests.unit.manager.raft.storage_model import digest

ROOT = Path(__file__).resolve().parents[4]


def _run_and_kill(path: Path, seed: int, rng: random.Random) -> tuple[int, set[str]]:
    """Start the writer, kill it after a random number of writes; return the number of
    acknowledged writes and the digests the file may now hold."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.manager.raft.storage_model", str(path), str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    kill_after = rng.randint(0, 40)
    acked, begun, last_acked = -1, -1, ""
    digests: dict[int, str] = {}
    try:
        for line in proc.stdout:
            kind, *rest = line.split()
            if kind == "S":
                last_acked = rest[0]
            elif kind == "B":
                begun = int(rest[0])
                digests[begun] = rest[1]
            elif kind == "A":
                acked = int(rest[0])
                last_acked = digests[acked]
                if acked >= kill_after:
                    # Land anywhere in the next write: before, inside or after its commit.
                    time.sleep(rng.random() * 0.004)
                    os.kill(proc.pid, signal.SIGKILL)
                    break
    finally:
        proc.kill()
        proc.wait()
        # Through the same text buffers the loop above used (communicate() would read the
        # raw pipes and miss what those buffers already hold).
        rest_of_output, errors = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    for line in rest_of_output.splitlines():  # lines written before the kill landed
        kind, *rest = line.split()
        if kind == "B":
            begun, digests[int(rest[0])] = int(rest[0]), rest[1]
        elif kind == "A":
            acked = int(rest[0])
            last_acked = digests[acked]
    assert proc.returncode == -signal.SIGKILL, f"the writer failed by itself:\n{errors}"
    allowed = {last_acked}
    if begun > acked:
        allowed.add(digests[begun])
    return acked + 1, allowed


def test_killed_writer_leaves_a_consistent_file_with_every_acknowledged_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "raft.db"
    rng = random.Random(2024)
    total = 0
    for round_ in range(8):
        acked, allowed = _run_and_kill(path, seed=1000 + round_, rng=rng)
        total += acked
        storage = SQLiteStorage.open(path)  # verifies every checksum and the structure
        try:
            got = digest(storage)
            assert got in allowed, f"round {round_}: {got} is not in {allowed} ({acked} acked)"
        finally:
            storage.close()
    assert total > 50
