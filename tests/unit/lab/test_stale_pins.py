"""stale_pins: empty task-netns files whose mount went with a dead mount namespace."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from shoal.lab.fabric import stale_pins


def _file(path: Path, age: float) -> None:
    path.touch()
    then = time.time() - age
    os.utime(path, (then, then))


def test_old_empty_pins_are_stale_young_ones_and_other_names_are_not(tmp_path: Path) -> None:
    _file(tmp_path / "shoal-t-old1", 120)
    _file(tmp_path / "shoal-t-young", 1)
    _file(tmp_path / "shoal-lab-h1", 120)  # a lab host's namespace name: not a task pin
    assert stale_pins(tmp_path, min_age=30) == ["shoal-t-old1"]
    assert stale_pins(tmp_path / "missing") == []


def test_a_mounted_pin_is_not_stale(tmp_path: Path) -> None:
    pin = tmp_path / "shoal-t-mounted"
    _file(pin, 120)
    subprocess.run(["mount", "--bind", "/proc/self/ns/net", str(pin)], check=True)
    try:
        assert stale_pins(tmp_path, min_age=30) == []
    finally:
        subprocess.run(["umount", str(pin)], check=True)
    assert stale_pins(tmp_path, min_age=30) == ["shoal-t-mounted"]
