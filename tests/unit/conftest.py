"""Make the checkout importable as ansible_collections.stackops.webstack."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".cache" / "collections"
if not (COLLECTIONS / "ansible_collections" / "stackops" / "webstack").exists():
    raise RuntimeError("run `make setup` first: it links this checkout as stackops.webstack")
sys.path.insert(0, str(ROOT / "tools"))

# Ansible's own collection loader, so plugins load as they do in a play.
from ansible.utils.collection_loader._collection_finder import (  # noqa: E402
    _AnsibleCollectionFinder,
)

_AnsibleCollectionFinder(paths=[str(COLLECTIONS)])._install()
