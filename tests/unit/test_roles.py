"""Every role documents and validates each of its public variables."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())


def load(path: Path):
    return yaml.safe_load(path.read_text()) or {}


def spec_options(role: Path) -> dict[str, dict]:
    specs = load(role / "meta" / "argument_specs.yml")["argument_specs"]
    options: dict[str, dict] = {}
    for entry in specs.values():
        options.update(entry.get("options") or {})
    return options


def test_there_are_roles():
    assert {r.name for r in ROLES} >= {"common", "firewall"}


def deprecated(option: dict) -> bool:
    """An old name kept for one release; it may have no default, so that the
    role sees whether the user set it."""
    return str(option.get("description", "")).startswith("Deprecated")


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_defaults_and_argument_specs_list_the_same_keys(role):
    defaults = set(load(role / "defaults" / "main.yml"))
    specs = spec_options(role)
    old_names = {k for k, option in specs.items() if deprecated(option)}
    assert defaults - set(specs) == set(), "defaults missing from argument_specs"
    assert set(specs) - defaults - old_names == set(), "argument_specs options without a default"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_variables_are_role_prefixed(role):
    prefix = role.name + "_"
    assert [k for k in load(role / "defaults" / "main.yml") if not k.startswith(prefix)] == []
    internal = load(role / "vars" / "main.yml") if (role / "vars" / "main.yml").exists() else {}
    assert [k for k in internal if not k.startswith("__" + prefix)] == []


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_literal_defaults_match_the_spec(role):
    defaults = load(role / "defaults" / "main.yml")
    for key, option in spec_options(role).items():
        if "default" in option:
            assert option["default"] == defaults[key], key
        assert option.get("description"), f"{key} has no description"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_readme_documents_every_variable(role):
    readme = (role / "README.md").read_text()
    missing = [k for k in load(role / "defaults" / "main.yml") if f"`{k}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_templates_carry_the_managed_marker(role):
    for template in (role / "templates").glob("**/*.j2") if (role / "templates").exists() else []:
        assert "ansible_managed" in template.read_text(), template.name
