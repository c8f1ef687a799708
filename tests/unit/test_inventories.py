"""Inventories: the stack's groups, and the same variables from every entry point."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = ["development", "staging", "production", "lab"]
STACK_GROUPS = {
    "loadbalancers",
    "app",
    "postgresql",
    "postgresql_primary",
    "postgresql_replicas",
    "redis",
    "monitoring",
}


def inventory(env: str, playbook_dir: Path) -> dict:
    out = subprocess.run(
        [
            "ansible-inventory",
            "-i",
            str(ROOT / "inventories" / env),
            "--list",
            "--playbook-dir",
            str(playbook_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")),
    )
    return json.loads(out.stdout)


def groups_of(data: dict) -> dict[str, set[str]]:
    """Group -> all hosts in it (children included)."""

    def hosts(group: str) -> set[str]:
        node = data.get(group, {})
        found = set(node.get("hosts", []))
        for child in node.get("children", []):
            found |= hosts(child)
        return found

    # ansible-inventory leaves out empty groups (no replicas in development).
    found = {g: hosts(g) for g in data if g != "_meta"}
    return {**{g: set() for g in STACK_GROUPS}, **found}


@pytest.fixture(scope="module", params=INVENTORIES)
def env(request):
    return request.param


def test_playbook_group_vars_link():
    link = ROOT / "playbooks" / "group_vars"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "group_vars").resolve()


def test_every_entry_point_sees_the_same_variables(env):
    from_site = inventory(env, ROOT)["_meta"]["hostvars"]
    from_tier = inventory(env, ROOT / "playbooks")["_meta"]["hostvars"]
    assert from_site == from_tier
    # and the environment-independent wiring really reaches every host
    assert all("webstack_ports" in hv for hv in from_site.values())


def test_inventories_do_not_shadow_the_shared_wiring(env):
    shared = set()
    for path in (ROOT / "group_vars" / "all").glob("*.yml"):
        shared |= set(yaml.safe_load(path.read_text()) or {})
    own = set()
    for path in (ROOT / "inventories" / env / "group_vars" / "all").glob("*.yml"):
        own |= set(yaml.safe_load(path.read_text()) or {})
    assert shared & own == set()


def test_the_stack_groups_exist(env):
    groups = groups_of(inventory(env, ROOT))
    assert len(groups["postgresql_primary"]) == 1
    assert groups["postgresql_primary"] | groups["postgresql_replicas"] == groups["postgresql"]
    assert not groups["postgresql_primary"] & groups["postgresql_replicas"]
    for group in ("loadbalancers", "app", "redis", "monitoring"):
        assert groups[group], f"{env}: {group} is empty"


def test_every_environment_names_itself(env):
    hostvars = inventory(env, ROOT)["_meta"]["hostvars"]
    assert {hv["webstack_environment"] for hv in hostvars.values()} == {env}


def test_production_has_the_documented_shape():
    groups = groups_of(inventory("production", ROOT))
    assert len(groups["app"]) == 3
    assert len(groups["postgresql_replicas"]) == 2
    assert len(groups["redis"]) == 3


def test_lab_hosts_are_the_documented_containers():
    groups = groups_of(inventory("lab", ROOT))
    expected = {"lb1", "app1", "app2", "db1", "db2", "redis1", "redis2", "redis3", "mon1", "s3"}
    assert groups["all"] == expected
