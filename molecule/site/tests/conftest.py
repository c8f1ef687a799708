import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_shared"))

from drill import pytest_runtest_logreport, summary_lines  # noqa: F401 (a pytest hook)


def pytest_terminal_summary(terminalreporter):
    """What every drill of this run measured, in the order the drills ran."""
    lines = summary_lines()
    if lines:
        terminalreporter.section("drills")
        for line in lines:
            terminalreporter.write_line(line)
