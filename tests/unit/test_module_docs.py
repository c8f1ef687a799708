"""Every module's DOCUMENTATION, EXAMPLES and RETURN is valid YAML of the expected shape.

ansible-doc and ansible-lint only warn about a document that does not parse; this
test makes such a mistake fail the build instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted((ROOT / "plugins" / "modules").glob("*.py"))
FRAGMENTS = sorted((ROOT / "plugins" / "doc_fragments").glob("*.py"))


def doc_strings(path: Path) -> dict[str, str]:
    """Top-level (and doc-fragment class level) string constants of a plugin file."""
    found: dict[str, str] = {}
    tree = ast.parse(path.read_text())
    nodes = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            nodes.extend(node.body)
    for node in nodes:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    found[target.id] = node.value.value
    return found


def test_there_are_modules():
    assert {p.stem for p in MODULES} >= {"pm2", "postgresql_topology"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_module_documents_parse(path):
    docs = doc_strings(path)
    assert {"DOCUMENTATION", "EXAMPLES", "RETURN"} <= set(docs)
    documentation = yaml.safe_load(docs["DOCUMENTATION"])
    assert documentation["module"] == path.stem
    assert documentation["short_description"]
    for name, option in (documentation.get("options") or {}).items():
        assert isinstance(option, dict), name
        assert option.get("description"), f"option {name} has no description"
    examples = yaml.safe_load(docs["EXAMPLES"])
    assert isinstance(examples, list)
    assert examples
    returned = yaml.safe_load(docs["RETURN"])
    assert isinstance(returned, dict)


@pytest.mark.parametrize("path", FRAGMENTS, ids=lambda p: p.stem)
def test_doc_fragments_parse(path):
    docs = doc_strings(path)
    assert docs
    for text in docs.values():
        assert isinstance(yaml.safe_load(text), dict)
