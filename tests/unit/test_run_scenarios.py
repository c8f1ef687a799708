"""tools/run_scenarios.py: scenarios in order, ``a+b`` runs b beside a."""

import importlib.util
import json
import os
import stat
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner(tmp_path, monkeypatch):
    """The runner with a fake `molecule` that logs what it ran and when."""
    spec = importlib.util.spec_from_file_location("run_scenarios", ROOT / "tools/run_scenarios.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "CACHE", tmp_path / ".cache")
    monkeypatch.setattr(module, "RECORDS", tmp_path / ".cache" / "drills.json")
    monkeypatch.setattr(module, "LOCK", tmp_path / "lock")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "molecule"
    # site waits for the marker of the scenarios beside it, as a drill does;
    # a scenario named "broken" fails.
    fake.write_text(
        "#!/bin/sh\n"
        'log="$FAKE_LOG"\n'
        'echo "start $3 quiet=${STACKOPS_QUIET_AFTER:-}" >> "$log"\n'
        'if [ "$3" = site ] && [ -n "${STACKOPS_QUIET_AFTER:-}" ]; then\n'
        '  while [ ! -e "$STACKOPS_QUIET_AFTER" ]; do sleep 0.05; done\n'
        "fi\n"
        'if [ "$3" != site ]; then sleep 0.3; fi\n'
        'echo "end $3" >> "$log"\n'
        'echo "output of $3"\n'
        'echo "run log of $3: ${STACKOPS_RUN_LOG:-}"\n'
        '[ "$3" != broken ]\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls"))
    return module


def calls(runner) -> list[str]:
    return (runner.ROOT / "calls").read_text().splitlines()


def test_scenarios_run_one_after_another(runner, capsys):
    assert runner.main(["common", "redis"]) == 0
    assert calls(runner) == ["start common quiet=", "end common", "start redis quiet=", "end redis"]


def test_a_scenario_beside_another_runs_at_the_same_time_and_its_output_follows(runner, capsys):
    assert runner.main(["site+stack12"]) == 0
    log = calls(runner)
    # Both started before either ended; site's drills could go on only once
    # stack12 had finished (the marker).
    assert {log[0].split()[1], log[1].split()[1]} == {"site", "stack12"}
    assert log.index("end stack12") < log.index("end site")
    out = capsys.readouterr().out
    assert "output of stack12" in out
    assert out.index("===== molecule test -s stack12 (ran beside site)") > out.index(
        "===== molecule test -s site ="
    )
    assert "stack12        passed" in out


def test_the_output_of_each_scenario_is_kept_where_its_tests_can_read_it(runner, capsys):
    assert runner.main(["common", "site+stack12"]) == 0
    out = capsys.readouterr().out
    for scenario in ("common", "site", "stack12"):
        log = runner.CACHE / f"molecule-{scenario}.log"
        text = log.read_text()
        assert f"output of {scenario}\n" in text
        assert f"run log of {scenario}: {log}\n" in text
        assert f"output of {scenario}\n" in out


def test_a_failure_beside_fails_the_run(runner, capsys):
    assert runner.main(["site+broken"]) == 1
    assert "broken         FAILED" in capsys.readouterr().out


def test_failed_tests_are_named_after_the_drills_and_before_the_summary(runner, capsys):
    runner.CACHE.mkdir()
    # As molecule/_shared/drill.py's hook leaves it; main() clears stale ones first.
    runner.FAILURES = runner.CACHE / "drills.failures.json"
    failures = json.dumps(
        [
            {
                "scenario": "site",
                "test": "tests/test_05.py::test_move",
                "when": "call",
                "error": ['DrillFailed: host db1, task "Wait"'],
            }
        ]
    )
    (runner.ROOT / "bin" / "molecule").write_text(
        f"#!/bin/sh\ncat > {runner.FAILURES} <<'JSON'\n{failures}\nJSON\nexit 1\n"
    )
    assert runner.main(["site"]) == 1
    out = capsys.readouterr().out
    tail = out[out.index("===== failed tests") :]
    assert "site     tests/test_05.py::test_move\n" in tail
    assert 'DrillFailed: host db1, task "Wait"' in tail
    assert tail.index("test_move") < tail.index("===== molecule summary")
    assert "site           FAILED" in tail
