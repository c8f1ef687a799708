import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "molecule" / "_shared"))
sys.path.insert(0, str(ROOT / "tests" / "unit"))
sys.path.insert(0, str(ROOT / ".cache" / "collections"))

from drill import pytest_runtest_logreport  # noqa: E402, F401 (a pytest hook, importable once the path is set)
