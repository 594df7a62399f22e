"""A shim whose runtime gave up before the handshake (a timeout on a loaded node: the
runtime's undo ran before the pin existed) removes its own netns pin instead of leaving it.

Runs the real shim in a private mount namespace of its own (`unshare -m`), so its pin and
the shared pin directory vanish with it whatever happens."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

DRIVER = r"""
import json, os, subprocess, sys, tempfile
root = tempfile.mkdtemp(prefix="shoal-shimgiveup-")
task = os.path.join(root, "task")
os.mkdir(task)
pin = os.path.join(root, "netns", "pin")
with open(os.path.join(task, "config.json"), "w") as fh:
    json.dump({"netns_path": pin, "host_mntns": None, "path": "/bin/true", "argv": ["true"],
               "env": {}, "cwd": "/", "hostname": "x"}, fh)
shim = subprocess.run([sys.executable, "-S", "-m", "shoal.agent.exec.shim", task],
                      stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
print(json.dumps({"said": shim.stdout, "code": shim.returncode, "err": shim.stderr,
                  "pin_left": os.path.lexists(pin), "root": root}))
"""


@pytest.mark.lab
def test_a_shim_without_its_runtime_removes_its_pin() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for namespaces")
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", DRIVER],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(result["root"], ignore_errors=True)  # out here: in there it is mounted on
    assert result["said"] == "netns local\n", result["err"]  # it did pin, then heard nothing
    assert result["code"] == 1
    assert result["pin_left"] is False
