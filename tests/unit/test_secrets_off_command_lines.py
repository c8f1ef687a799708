"""No task hands a secret to a process through `environment:`.

Ansible writes a task's environment into the command line it runs on the
host (``VAR=value python3 ...``), and with become that line goes through sudo,
which logs it to the journal. Secrets go in module parameters (no_log) or
through the module's stdin (``redis-cli --askpass``) instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(
    [ROOT / "site.yml"]
    + list((ROOT / "playbooks").rglob("*.yml"))
    + [
        path
        for part in ("tasks", "handlers")
        for path in (ROOT / "roles").glob(f"*/{part}/**/*.yml")
    ]
)
SECRET = re.compile(r"password|passphrase|secret|token|REDISCLI_AUTH|PGPASSWORD", re.IGNORECASE)
NESTED = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")


def environments(node, where=""):
    """(task name, environment) of every task or play below ``node``."""
    if isinstance(node, list):
        for item in node:
            yield from environments(item, where)
    elif isinstance(node, dict):
        name = node.get("name", where)
        if "environment" in node:
            yield name, node["environment"]
        for key in NESTED:
            if key in node:
                yield from environments(node[key], name)


def test_the_files_are_found():
    assert any(p.match("roles/redis/handlers/main.yml") for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_secret_in_an_environment(path):
    found = [
        (name, env)
        for name, env in environments(yaml.safe_load(path.read_text()))
        if SECRET.search(yaml.safe_dump(env))
    ]
    assert found == []
