#!/usr/bin/env python3
"""Run molecule scenarios one after another and print how long each took.

Only one scenario runs at a time on a machine (a lock file serialises
parallel callers), because a scenario's containers need both cores.
Every scenario runs even when an earlier one failed; the exit status is
non-zero when any failed.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = Path(os.environ.get("STACKOPS_MOLECULE_LOCK", "/var/lock/stackops-molecule.lock"))


def run(scenario: str) -> tuple[bool, float]:
    start = time.monotonic()
    print(f"\n===== molecule test -s {scenario} =====", flush=True)
    proc = subprocess.run(["molecule", "test", "-s", scenario], cwd=ROOT, check=False)
    return proc.returncode == 0, time.monotonic() - start


def main(argv: list[str]) -> int:
    scenarios = argv or sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
    results = []
    with LOCK.open("w") as lock:
        waited = time.monotonic()
        fcntl.flock(lock, fcntl.LOCK_EX)
        if time.monotonic() - waited > 1:
            print(f"(waited {time.monotonic() - waited:.0f} s for another molecule run)")
        for scenario in scenarios:
            ok, seconds = run(scenario)
            results.append((scenario, ok, seconds))
    print("\n===== molecule summary =====")
    for scenario, ok, seconds in results:
        print(f"  {scenario:<14} {'passed' if ok else 'FAILED':<7} {seconds:6.0f} s")
    total = sum(r[2] for r in results)
    print(f"  {'total':<14} {'':<7} {total:6.0f} s")
    return 0 if all(r[1] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
