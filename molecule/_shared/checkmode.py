"""Shared test: the scenario's converge passes in --check --diff mode and prints no secret.

A scenario opts in with a one-line test module:

    from checkmode import test_check_diff_passes_and_prints_no_secret  # noqa: F401

Secrets are the values the stackops.webstack.secret lookup generated into the
scenario inventory's .secrets directory. When the scenario's inventory or
converge playbook uses that lookup, the directory must hold at least one of
them, so that "prints no secret" is checked against real values.

LAB_CHECK_LIMIT (verifier env of the scenario, comma-separated hosts) runs the
check as `--check --diff --limit <hosts>`, the way an operator checks a part
of a fleet; the roles then read the other hosts' addresses from the fact
cache, which the scenario must keep in a file (fact_caching: jsonfile).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

LOOKUP_PLUGIN = "stackops.webstack.secret"


def _secrets(inventory_dir: Path) -> dict[str, str]:
    found = {}
    for path in sorted((inventory_dir / ".secrets").glob("*")):
        if path.is_file():
            value = path.read_text().strip()
            if len(value) >= 8:
                found[path.name] = value
    return found


def _uses_secret_lookup(inventory_dir: Path, scenario: Path) -> bool:
    converge = scenario / "converge.yml"
    dirs = [inventory_dir / "group_vars", inventory_dir / "host_vars"]
    # A playbook the converge imports brings the group_vars beside it along
    # (site.yml: the project's own group_vars).
    for play in yaml.safe_load(converge.read_text()) or []:
        imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if imported:
            dirs.append((converge.parent / imported).resolve().parent / "group_vars")
    files = [converge]
    for top in dirs:
        for root, _dirs, names in os.walk(top, followlinks=True):
            files += [Path(root, name) for name in names]
    return any(LOOKUP_PLUGIN in path.read_text(errors="replace") for path in files)


def test_check_diff_passes_and_prints_no_secret():
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    inventory_dir = Path(inventory).parent
    env = dict(os.environ, ANSIBLE_CONFIG=str(ephemeral / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    limit = os.environ.get("LAB_CHECK_LIMIT", "").strip()
    command = ["ansible-playbook", "--check", "--diff", "-i", inventory]
    if limit:
        command += ["--limit", limit]
    result = subprocess.run(
        [*command, str(scenario / "converge.yml")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "failed=0" in output
    secrets = _secrets(inventory_dir)
    if _uses_secret_lookup(inventory_dir, scenario):
        assert secrets, f"the scenario uses {LOOKUP_PLUGIN} but {inventory_dir}/.secrets is empty"
    leaked = [name for name, value in secrets.items() if value in output]
    assert leaked == [], f"--check --diff printed the secrets {leaked}"
