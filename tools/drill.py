#!/usr/bin/env python3
"""Run drills (tests) of a molecule scenario again, against its running lab.

    tools/drill.py site molecule/site/tests/test_40_postgresql.py [-k switchover]

For working on one drill: `molecule converge -s site` (or a `molecule test
-s site --destroy never` that stopped at a failed drill) leaves the lab up;
this runs pytest on the given test files with the environment molecule's
verify step gives them (inventory, ephemeral directory, the scenario's
verifier env). A drill changes the lab, so a repeated run starts from
wherever the last one left it.

    tools/drill.py site --playbook playbooks/database.yml [--diff ...]

runs a playbook instead, with that same environment (the lab's inventory,
strategy and HA mode), e.g. to apply a changed role to a lab after drills.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def ephemeral_dir(scenario: str) -> Path:
    found = sorted(
        (Path(p) for p in glob.glob(os.path.expanduser(f"~/.ansible/tmp/molecule.*.{scenario}"))),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        sys.exit(f"drill: no molecule state of scenario {scenario}; converge it first")
    return found[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    scenario_dir = ROOT / "molecule" / args.scenario
    ephemeral = ephemeral_dir(args.scenario)
    config = yaml.safe_load((scenario_dir / "molecule.yml").read_text())
    env = dict(os.environ)
    env.update(
        MOLECULE_PROJECT_DIRECTORY=str(ROOT),
        MOLECULE_SCENARIO_NAME=args.scenario,
        MOLECULE_SCENARIO_DIRECTORY=str(scenario_dir),
        MOLECULE_EPHEMERAL_DIRECTORY=str(ephemeral),
        MOLECULE_INVENTORY_FILE=str(ephemeral / "inventory" / "ansible_inventory.yml"),
        ANSIBLE_CONFIG=str(ephemeral / "ansible.cfg"),
    )
    os.environ.update(env)  # ${MOLECULE_...} in the scenario's env values
    for key, value in ((config.get("verifier") or {}).get("env") or {}).items():
        env[key] = os.path.expandvars(str(value))
    inventory = env["MOLECULE_INVENTORY_FILE"]
    if args.pytest_args[:1] == ["--playbook"] and len(args.pytest_args) > 1:
        command = ["ansible-playbook", "-i", inventory, *args.pytest_args[1:]]
        return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    command = [
        "pytest",
        "-v",
        "-p",
        "no:cacheprovider",
        "--connection=ansible",
        f"--ansible-inventory={inventory}",
        *args.pytest_args,
    ]
    return subprocess.run(command, cwd=scenario_dir, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
