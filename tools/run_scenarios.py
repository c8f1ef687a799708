#!/usr/bin/env python3
"""Run molecule scenarios one after another and print how long each took.

Only one scenario runs at a time on a machine (a lock file serialises
parallel callers), because a scenario's containers need both cores.
Every scenario runs even when an earlier one failed; the exit status is
non-zero when any failed.
"""

from __future__ import annotations

import fcntl
import json
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


RECORDS = ROOT / ".cache" / "drills.json"


def print_drills() -> None:
    """What every drill of this run measured (records written by molecule/_shared/drill.py)."""
    if not RECORDS.exists():
        return
    print("\n===== drills =====")
    for entry in json.loads(RECORDS.read_text()):
        figures = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("drill", "scenario"))
        print(f"  {entry.get('scenario', ''):<8} {entry['drill']:<44} {figures}")


def main(argv: list[str]) -> int:
    scenarios = argv or sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
    results = []
    RECORDS.parent.mkdir(exist_ok=True)
    RECORDS.unlink(missing_ok=True)
    os.environ["STACKOPS_DRILL_RECORDS"] = str(RECORDS)
    with LOCK.open("w") as lock:
        waited = time.monotonic()
        fcntl.flock(lock, fcntl.LOCK_EX)
        if time.monotonic() - waited > 1:
            print(f"(waited {time.monotonic() - waited:.0f} s for another molecule run)")
        for scenario in scenarios:
            ok, seconds = run(scenario)
            results.append((scenario, ok, seconds))
    print_drills()
    print("\n===== molecule summary =====")
    for scenario, ok, seconds in results:
        print(f"  {scenario:<14} {'passed' if ok else 'FAILED':<7} {seconds:6.0f} s")
    total = sum(r[2] for r in results)
    print(f"  {'total':<14} {'':<7} {total:6.0f} s")
    return 0 if all(r[1] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
