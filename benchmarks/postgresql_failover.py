#!/usr/bin/env python3
"""Kill the PostgreSQL primary's host N times and report median and max failover figures.

    python3 benchmarks/postgresql_failover.py --runs 5

Needs the site scenario converged and in Patroni mode (after test_05 of
`make test`, or `molecule converge -s site` with STACKOPS_LAB_HA_MANAGER
unset). Each run is the drill `test_45_postgresql_failover.py::
test_the_primary_host_dies_and_a_replica_takes_over_without_losing_a_write`
(docker kill of the primary's host under write load, promotion, first
acknowledged write, no acknowledged write lost, the old host rejoins), so
every run starts from a healthy cluster with the other host leading. The
figures come from the drill's own records. Bounded: at most 10 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRILL = (
    "tests/test_45_postgresql_failover.py::"
    "test_the_primary_host_dies_and_a_replica_takes_over_without_losing_a_write"
)
KILLED = "postgresql primary host killed"
FIGURES = ("leader_s", "first_write_s", "write_gap_max_s", "failed", "lost_writes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scenario", default="site")
    args = parser.parse_args()
    if not 1 <= args.runs <= 10:
        sys.exit("--runs must be between 1 and 10")
    records = Path(tempfile.mkdtemp()) / "drills.json"
    env = dict(os.environ, STACKOPS_DRILL_RECORDS=str(records))
    for n in range(1, args.runs + 1):
        print(f"run {n}/{args.runs}", flush=True)
        done = subprocess.run(  # noqa: S603 - fixed argv: this checkout's drill runner
            [sys.executable, str(ROOT / "tools" / "drill.py"), args.scenario, DRILL, "-q"],
            cwd=ROOT,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            print(f"run {n} failed (exit {done.returncode}); stopping", file=sys.stderr)
            return 1
    runs = [
        r
        for r in json.loads(records.read_text())
        if r["drill"].startswith("postgresql primary host killed")
    ]
    print("| run | old -> new | " + " | ".join(FIGURES) + " |")
    print("|---|---|" + "---:|" * len(FIGURES))
    for n, r in enumerate(runs, 1):
        print(
            f"| {n} | {r['old']} -> {r['new']} | "
            + " | ".join(str(r.get(f)) for f in FIGURES)
            + " |"
        )
    for figure in ("leader_s", "first_write_s"):
        values = [r[figure] for r in runs if r.get(figure) is not None]
        median, worst = statistics.median(values), max(values)
        print(f"{figure}: median {median:.1f} s, max {worst:.1f} s, runs {len(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
