"""False suspicions and deaths under CPU stress: a running lab (no node is stopped) while
`stress-ng --cpu N` loads every core for --seconds; then the gossip lines each daemon
logged meanwhile are counted ("member X ... is suspect|dead|alive"). Every suspicion or
death seen here is false: all nodes stay up. The same count over an equal quiet period
just before is the baseline of the same invocation.

    .venv/bin/python bench/false_deaths.py [--seconds 60] [--cpus 2]   (SHOAL_LAB_TAG picks a lab)

Keep --seconds short on a shared machine.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shoal.lab.lab import Lab

_LINE = re.compile(r"gossip \S+: member (\S+) \(\S+\) is (suspect|dead|alive) at incarnation")


def offsets(lab: Lab) -> dict[str, int]:
    return {h: lab.layout.daemon_log(h).stat().st_size for h in lab.hosts()}


def count(lab: Lab, since: dict[str, int]) -> collections.Counter[tuple[str, str]]:
    """(status, member) -> how many daemons logged that change since `since`."""
    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    for host, start in since.items():
        with open(lab.layout.daemon_log(host), "rb") as log:
            log.seek(start)
            for line in log.read().decode(errors="replace").splitlines():
                match = _LINE.search(line)
                if match:
                    seen[(match.group(2), match.group(1)[:12])] += 1
    return seen


def show(name: str, seen: collections.Counter[tuple[str, str]], seconds: float) -> None:
    total = collections.Counter()
    for (status, _), n in seen.items():
        total[status] += n
    print(f"| {name} | {seconds:.0f} s | {total['suspect']} | {total['dead']} "
          f"| {total['alive']} | {dict(seen) or '-'} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    stress = shutil.which("stress-ng")
    if stress is None:
        raise SystemExit("stress-ng is not installed (apt-get install stress-ng)")
    lab = Lab(os.environ.get("SHOAL_LAB_TAG", ""))
    if not lab.is_up():
        raise SystemExit("no lab is up: shoal lab up --nodes 5 --managers 3")
    quiet_from = offsets(lab)
    quiet_load = os.getloadavg()[0]
    time.sleep(args.seconds)
    stress_from = offsets(lab)
    stress_load = os.getloadavg()[0]
    subprocess.run([stress, "--cpu", str(args.cpus), "--timeout", f"{int(args.seconds)}s",
                    "--quiet"], check=True, timeout=args.seconds + 60)  # fmt: skip
    time.sleep(5)  # what was decided during the stress reaches the log
    after_load = os.getloadavg()[0]
    print(f"load average: quiet {quiet_load:.1f}, stress start {stress_load:.1f}, "
          f"after {after_load:.1f}; {len(lab.hosts())} hosts")  # fmt: skip
    print("| period | length | suspect | dead | alive again | (status, member): daemons |")
    print("|---|---|---|---|---|---|")
    show("quiet (baseline)", count(lab, quiet_from) - count(lab, stress_from), args.seconds)
    show(f"stress-ng --cpu {args.cpus}", count(lab, stress_from), args.seconds + 5)


if __name__ == "__main__":
    main()
