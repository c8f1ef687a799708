#!/usr/bin/env python3
"""Run molecule scenarios and print how long each took.

Arguments are scenarios, run one after another. ``a+b`` runs scenario b in
the background while scenario a runs: b's output goes to a log file that is
printed when it has finished, and a's drills wait for b before they put load
on a lab or kill a host (molecule/_shared/drill.py: ``quiet_machine``), so
the drills measure on a machine that does nothing else. What overlaps is b
with a's create, converge and read-only checks.

Only one such run goes on at a time on a machine (a lock file serialises
parallel callers). Every scenario runs even when an earlier one failed; the
exit status is non-zero when any failed.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = Path(os.environ.get("STACKOPS_MOLECULE_LOCK", "/var/lock/stackops-molecule.lock"))
CACHE = ROOT / ".cache"
RECORDS = CACHE / "drills.json"
# Written by molecule/_shared/drill.py's pytest hook: one entry per failed test.
FAILURES = CACHE / "drills.failures.json"


def run(scenario: str, env: dict[str, str] | None = None) -> tuple[bool, float]:
    """One scenario in the foreground; its output also goes to .cache/molecule-<scenario>.log,
    which the scenario's own tests may read (the secret search reads the Ansible output)."""
    start = time.monotonic()
    print(f"\n===== molecule test -s {scenario} =====", flush=True)
    log = CACHE / f"molecule-{scenario}.log"
    env = dict(env or os.environ, STACKOPS_RUN_LOG=str(log))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["molecule", "test", "-s", scenario],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for line in iter(proc.stdout.readline, b""):
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
            out.write(line)
            out.flush()
        proc.stdout.close()
        returncode = proc.wait()
    return returncode == 0, time.monotonic() - start


class Beside:
    """A scenario that runs in the background, its output kept in a log file."""

    def __init__(self, scenario: str):
        self.scenario = scenario
        self.log = CACHE / f"molecule-{scenario}.log"
        self.start = time.monotonic()
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                ["molecule", "test", "-s", scenario],
                cwd=ROOT,
                env=dict(os.environ, STACKOPS_RUN_LOG=str(self.log)),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.seconds = 0.0

    def wait(self) -> bool:
        returncode = self.proc.wait()
        if not self.seconds:
            self.seconds = time.monotonic() - self.start
        return returncode == 0

    def report(self, beside: str) -> tuple[str, bool, float]:
        ok = self.wait()
        print(f"\n===== molecule test -s {self.scenario} (ran beside {beside}) =====", flush=True)
        sys.stdout.write(self.log.read_text(errors="replace"))
        sys.stdout.flush()
        return self.scenario, ok, self.seconds


def run_group(group: list[str]) -> list[tuple[str, bool, float]]:
    """The first scenario of ``group`` in the foreground, the others beside it."""
    first, others = group[0], group[1:]
    if not others:
        return [(first, *run(first))]
    quiet = CACHE / f"quiet-{first}"
    quiet.unlink(missing_ok=True)
    print(f"\n===== beside {first}: {' '.join(others)} (output when done) =====", flush=True)
    background = [Beside(name) for name in others]

    def when_done():
        for item in background:
            item.wait()
        quiet.write_text(" ".join(others) + "\n")

    threading.Thread(target=when_done, daemon=True).start()
    env = dict(os.environ, STACKOPS_QUIET_AFTER=str(quiet))
    results = [(first, *run(first, env))]
    results += [item.report(first) for item in background]
    return results


def print_drills() -> None:
    """What every drill of this run measured (records written by molecule/_shared/drill.py)."""
    if not RECORDS.exists():
        return
    print("\n===== drills =====")
    for entry in json.loads(RECORDS.read_text()):
        figures = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("drill", "scenario"))
        print(f"  {entry.get('scenario', ''):<8} {entry['drill']:<44} {figures}")


def print_failures() -> None:
    """Each failed test and what it said, so the last lines of a run name them."""
    if not FAILURES.exists():
        return
    print("\n===== failed tests =====")
    for entry in json.loads(FAILURES.read_text()):
        when = "" if entry.get("when") == "call" else f" ({entry.get('when')})"
        print(f"  {entry.get('scenario', ''):<8} {entry['test']}{when}")
        for line in entry.get("error", []):
            print(f"           {line}")


def main(argv: list[str]) -> int:
    groups = [arg.split("+") for arg in argv] or [
        [p.parent.name] for p in sorted((ROOT / "molecule").glob("*/molecule.yml"))
    ]
    results = []
    CACHE.mkdir(exist_ok=True)
    RECORDS.unlink(missing_ok=True)
    FAILURES.unlink(missing_ok=True)
    os.environ["STACKOPS_DRILL_RECORDS"] = str(RECORDS)
    started = time.monotonic()
    with LOCK.open("w") as lock:
        waited = time.monotonic()
        fcntl.flock(lock, fcntl.LOCK_EX)
        if time.monotonic() - waited > 1:
            print(f"(waited {time.monotonic() - waited:.0f} s for another molecule run)")
        for group in groups:
            results += run_group(group)
    print_drills()
    print_failures()
    print("\n===== molecule summary =====")
    for scenario, ok, seconds in results:
        print(f"  {scenario:<14} {'passed' if ok else 'FAILED':<7} {seconds:6.0f} s")
    print(f"  {'wall clock':<14} {'':<7} {time.monotonic() - started:6.0f} s")
    return 0 if all(r[1] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
