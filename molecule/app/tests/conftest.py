import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_shared"))

from drill import pytest_runtest_logreport  # noqa: F401 (a pytest hook)
