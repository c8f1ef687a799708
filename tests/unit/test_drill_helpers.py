"""molecule/_shared/drill.py: a failed drill names the host and the task."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "molecule" / "_shared"))

import drill

YAML_FAILURE = """\
TASK [stackops.webstack.postgresql : Create the data directory when it is missing] ***
ok: [db1]

TASK [stackops.webstack.postgresql : Empty the data directory] ***
[ERROR]: Task failed: Module failed: non-zero return code
fatal: [db2]: FAILED! =>
    changed: true
    msg: non-zero return code
    rc: 1
    stderr: 'find: no such directory'

PLAY RECAP *********
db1                        : ok=12   changed=0    unreachable=0    failed=0    skipped=3
db2                        : ok=10   changed=2    unreachable=0    failed=1    skipped=1
"""

JSON_FAILURE = """\
TASK [Check the request] ***
fatal: [lb1]: FAILED! => {"changed": false, "msg": "nginx rejected the new configuration"}
"""


def test_a_yaml_failure_names_host_task_and_message():
    (line,) = drill.failures(YAML_FAILURE)
    assert line.startswith(
        'host db2, task "stackops.webstack.postgresql : Empty the data directory"'
    )
    assert "non-zero return code" in line
    assert "no such directory" in line


def test_a_json_failure_is_read_too():
    assert drill.failures(JSON_FAILURE) == [
        'host lb1, task "Check the request": nginx rejected the new configuration'
    ]


def test_the_recap_and_the_changed_tasks():
    run = drill.Run(2, YAML_FAILURE, 1.0)
    assert run.recap()["db2"] == {"ok": 10, "changed": 2, "unreachable": 0, "failed": 1}
    assert run.changed_hosts() == {"db2": 2}
    assert drill.failures("PLAY RECAP\n") == []


def test_quiet_machine_returns_at_once_without_scenarios_beside(monkeypatch):
    monkeypatch.delenv("STACKOPS_QUIET_AFTER", raising=False)
    assert drill.quiet_machine() == 0.0


def test_quiet_machine_waits_for_the_marker_and_gives_up_after_its_timeout(monkeypatch, tmp_path):
    marker = tmp_path / "quiet-site"
    monkeypatch.setenv("STACKOPS_QUIET_AFTER", str(marker))
    slept = []
    monkeypatch.setattr(drill.time, "sleep", lambda s: (slept.append(s), marker.touch()))
    drill.quiet_machine(timeout=60)
    assert slept, "it must wait while the marker is missing"
    # Present: no wait at all.
    slept.clear()
    drill.quiet_machine(timeout=60)
    assert not slept
    # Never written: it goes on after the timeout instead of hanging the run.
    marker.unlink()
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(drill.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(drill.time, "sleep", lambda s: None)
    assert drill.quiet_machine(timeout=30) >= 30


def test_records_of_scenarios_side_by_side_are_all_kept(monkeypatch, tmp_path):
    records = tmp_path / "drills.json"
    monkeypatch.setattr(drill, "RECORDS", records)
    monkeypatch.setenv("MOLECULE_SCENARIO_NAME", "site")
    drill.record("one", seconds=1)
    monkeypatch.setenv("MOLECULE_SCENARIO_NAME", "stack12")
    drill.record("two", seconds=2)
    assert [line.split()[:2] for line in drill.summary_lines(records, scenario="")] == [
        ["site", "one"],
        ["stack12", "two"],
    ]


class _Report:
    def __init__(self, failed, when="call", text=""):
        self.failed = failed
        self.when = when
        self.nodeid = "tests/test_05_patroni.py::test_move"
        self.longreprtext = text


def test_a_failed_test_is_kept_with_its_error_lines(tmp_path, monkeypatch):
    failures = tmp_path / "drills.failures.json"
    monkeypatch.setattr(drill, "FAILURES", failures)
    monkeypatch.setenv("MOLECULE_SCENARIO_NAME", "site")
    drill.pytest_runtest_logreport(_Report(failed=False))
    assert not failures.exists()
    text = (
        "    def test_move():\n>       run = playbook('x.yml')\n"
        'E       drill.DrillFailed: x.yml failed (exit 2): host db1, task "Wait"\n'
        "E       \n"
        "E       assert 1 == 0\n\ntests/test_05_patroni.py:44: DrillFailed\n"
    )
    drill.pytest_runtest_logreport(_Report(failed=True, text=text))
    drill.pytest_runtest_logreport(_Report(failed=True, when="setup", text="boom\nlast line\n"))
    first, second = json.loads(failures.read_text())
    assert first == {
        "scenario": "site",
        "test": "tests/test_05_patroni.py::test_move",
        "when": "call",
        "error": [
            'drill.DrillFailed: x.yml failed (exit 2): host db1, task "Wait"',
            "assert 1 == 0",
        ],
    }
    # Without E lines, the last lines of the report stand for it.
    assert second["when"] == "setup"
    assert second["error"] == ["boom", "last line"]
