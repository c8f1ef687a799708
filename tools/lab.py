#!/usr/bin/env python3
"""`make lab`: the whole stack in local containers, converged with site.yml.

lab.py up        containers for every host of inventories/lab, then site.yml
lab.py converge  site.yml again against the running lab
lab.py down      remove the lab containers and network
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "inventories" / "lab"


def strategy_env() -> dict[str, str]:
    """Ansible settings of a lab run: mitogen_linear unless STACKOPS_LAB_STRATEGY=linear.

    mitogen knows Ansible's docker connection, not the lab's lab_docker
    (inventories/lab reads STACKOPS_LAB_CONNECTION).
    """
    choice = os.environ.get("STACKOPS_LAB_STRATEGY", "mitogen")
    if choice == "linear":
        return {}
    if choice != "mitogen":
        sys.exit(f"lab: STACKOPS_LAB_STRATEGY must be mitogen or linear, not {choice!r}")
    plugins = ROOT / ".cache" / "mitogen-strategy"
    if not plugins.is_dir():
        sys.exit("lab: mitogen is not installed in the virtualenv; run `make setup`")
    return {
        "ANSIBLE_STRATEGY": "mitogen_linear",
        "ANSIBLE_STRATEGY_PLUGINS": str(plugins),
        "STACKOPS_LAB_CONNECTION": "docker",
    }


def playbook(path: Path, *extra: str) -> None:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), **strategy_env())
    cmd = ["ansible-playbook", "-i", str(INVENTORY), str(path), *extra]
    print(f"\n>>> {' '.join(cmd)}", flush=True)
    result = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"lab: {path.name} failed (exit {result.returncode})")


def summary(seconds: float) -> None:
    print(
        f"""
The lab is up ({seconds:.0f} s). Where to look:
  containers      docker ps --filter label=stackops.lab.scenario=stackops-lab
  a shell         docker exec -it app1 bash
  the example app https://localhost:8443/  (self-signed; by name: no TLS without SNI)
  Prometheus      http://127.0.0.1:9090/  user prometheus (password: README, "make lab")
  Grafana         http://127.0.0.1:3001/  when its package could be installed (see README)
  converge again  make lab-converge        remove it: make lab-destroy
""",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "converge", "down"])
    parser.add_argument("ansible_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    start = time.monotonic()
    if args.action == "down":
        playbook(ROOT / "tools" / "lab" / "down.yml")
        print(f"lab removed in {time.monotonic() - start:.0f} s")
        return
    if args.action == "up":
        playbook(ROOT / "tools" / "lab" / "up.yml")
        # Lab infrastructure, not part of the product: the S3 endpoint of the backups.
        playbook(ROOT / "tools" / "lab" / "s3.yml")
    playbook(ROOT / "site.yml", *args.ansible_args)
    summary(time.monotonic() - start)


if __name__ == "__main__":
    main()
