"""Shared test: the scenario's converge passes in --check --diff mode and prints no secret.

A scenario opts in with a one-line test module:

    from checkmode import test_check_diff_passes_and_prints_no_secret  # noqa: F401

Secrets are the values the stackops.webstack.secret lookup generated into the
scenario inventory's .secrets directory, plus any file the scenario lists in
the environment variable LAB_EXTRA_SECRET_FILES.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def _secrets() -> dict[str, str]:
    inventory_dir = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    found = {}
    for path in sorted((inventory_dir / ".secrets").glob("*")):
        if path.is_file():
            value = path.read_text().strip()
            if len(value) >= 8:
                found[path.name] = value
    return found


def test_check_diff_passes_and_prints_no_secret():
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    env = dict(os.environ, ANSIBLE_CONFIG=str(ephemeral / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    result = subprocess.run(
        [
            "ansible-playbook",
            "--check",
            "--diff",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            str(scenario / "converge.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "failed=0" in output
    leaked = [name for name, value in _secrets().items() if value in output]
    assert leaked == [], f"--check --diff printed the secrets {leaked}"
