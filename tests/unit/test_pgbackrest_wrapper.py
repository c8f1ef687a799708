"""The backup wrapper of the pgbackrest role: metrics, repository view, drill helpers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles" / "pgbackrest" / "files" / "webstack_pgbackrest.py"


def _load():
    spec = importlib.util.spec_from_file_location("webstack_pgbackrest", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["webstack_pgbackrest"] = module
    spec.loader.exec_module(module)
    return module


wrapper = _load()


def backup(label, kind, stop, error=False, size=1000):
    return {
        "label": label,
        "type": kind,
        "error": error,
        "timestamp": {"start": stop - 10, "stop": stop},
        "info": {"size": size},
    }


def info(*backups, code=0, message="ok"):
    return [
        {"name": "webstack", "backup": list(backups), "status": {"code": code, "message": message}}
    ]


def test_a_higher_level_backup_satisfies_the_lower_kinds():
    newest = wrapper.newest_backups(
        info(backup("F1", "full", 100), backup("D1", "diff", 200), backup("I1", "incr", 300))
    )
    assert newest == {"postgresql_full": 100, "postgresql_diff": 200, "postgresql_incr": 300}
    newest = wrapper.newest_backups(info(backup("F1", "full", 100), backup("F2", "full", 400)))
    assert newest == {"postgresql_full": 400, "postgresql_diff": 400, "postgresql_incr": 400}


def test_backups_with_errors_do_not_count():
    newest = wrapper.newest_backups(
        info(backup("F1", "full", 100), backup("D1", "diff", 200, error=True))
    )
    assert newest["postgresql_diff"] == 100
    assert (
        wrapper.latest_backup(info(backup("F1", "full", 1), backup("D1", "diff", 2, True)))["label"]
        == "F1"
    )


def test_an_empty_repository_reports_nothing():
    assert wrapper.newest_backups(info()) == {}
    assert wrapper.newest_backups([]) == {}
    assert wrapper.latest_backup(info()) is None
    assert wrapper.repo_status(info(code=1, message="missing stanza path")) == (
        1,
        "missing stanza path",
    )
    assert wrapper.repo_status([])[0] == 99


def test_metrics_round_trip_and_keep_other_kinds():
    first = wrapper.merge_run({}, {"postgresql_full": 100.0}, "postgresql_full", ok=True, now=150.9)
    text = wrapper.render_metrics(first)
    assert 'webstack_backup_last_success_timestamp_seconds{kind="postgresql_full"} 100\n' in text
    assert 'webstack_backup_last_run_success{kind="postgresql_full"} 1\n' in text
    assert 'webstack_backup_last_run_timestamp_seconds{kind="postgresql_full"} 150\n' in text
    assert text.count("# TYPE webstack_backup_last_run_success gauge") == 1
    # A failed diff run later keeps the full's result and the repository view.
    second = wrapper.merge_run(
        wrapper.parse_metrics(text), None, "postgresql_diff", ok=False, now=200
    )
    again = wrapper.parse_metrics(wrapper.render_metrics(second))
    assert again["webstack_backup_last_run_success"] == {
        "postgresql_full": 1.0,
        "postgresql_diff": 0.0,
    }
    assert again["webstack_backup_last_success_timestamp_seconds"] == {"postgresql_full": 100.0}


def test_the_alert_threshold_of_each_kind_is_written():
    samples = wrapper.merge_run(
        {},
        {"postgresql_full": 100.0},
        None,
        ok=True,
        now=150,
        max_age={"full": 691200, "diff": 93600},
    )
    text = wrapper.render_metrics(samples)
    assert 'webstack_backup_max_age_seconds{kind="postgresql_full"} 691200\n' in text
    assert 'webstack_backup_max_age_seconds{kind="postgresql_diff"} 93600\n' in text
    assert "# HELP webstack_backup_max_age_seconds " in text
    # Without a run kind (metrics only), no run result is recorded.
    assert "webstack_backup_last_run_success" not in text


def test_help_texts_match_the_redis_exporter():
    """node-exporter merges the files only when HELP texts of a metric are identical."""
    spec = importlib.util.spec_from_file_location(
        "webstack_redis_backup_help",
        ROOT / "roles" / "redis_backup" / "files" / "webstack_redis_backup.py",
    )
    redis = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(redis)
    for name, text in redis.HELP.items():
        assert wrapper.HELP[name] == text


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "metrics" / "x.prom"
    wrapper.write_atomic(target, "a 1\n")
    wrapper.write_atomic(target, "a 2\n")
    assert target.read_text() == "a 2\n"
    assert [p.name for p in target.parent.iterdir()] == ["x.prom"]
    assert target.stat().st_mode & 0o777 == 0o644


CONTROLDATA = """pg_control version number:            1700
Database system identifier:           7710853419654166960
wal_level setting:                    replica
max_connections setting:              300
max_worker_processes setting:         16
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           128
"""


def test_drill_instance_gets_at_least_the_primary_settings(tmp_path):
    control = wrapper.parse_controldata(CONTROLDATA)
    assert control == {
        "max_connections": 300,
        "max_worker_processes": 16,
        "max_wal_senders": 10,
        "max_prepared_transactions": 0,
        "max_locks_per_transaction": 128,
    }
    settings = wrapper.drill_settings(tmp_path, 54329, "64MB", control)
    assert settings["listen_addresses"] == ""
    assert settings["archive_mode"] == "off"
    assert settings["unix_socket_directories"] == str(tmp_path)
    assert settings["max_connections"] == 300
    rendered = wrapper.render_settings({"a": "it's", "b": 1})
    assert "a = 'it''s'" in rendered
    assert "b = '1'" in rendered


@pytest.mark.parametrize(
    ("query", "rc", "output", "ok"),
    [
        ({"sql": "SELECT 1", "expect": "1"}, 0, "1\n", True),
        ({"sql": "SELECT 1", "expect": 2}, 0, "1\n", False),
        ({"sql": "SELECT 1"}, 0, "anything\n", True),
        ({"sql": "SELECT x", "expect": "1"}, 1, "", False),
    ],
)
def test_verification_queries(query, rc, output, ok):
    result = wrapper.check_result(query, rc, output, "ERROR: column x does not exist")
    assert result["ok"] is ok
    assert result["database"] == "postgres"
    if rc:
        assert "does not exist" in result["error"]


def test_recovery_end_from_the_server_log():
    log = (
        "LOG:  redo done at 0/6000120\n"
        "LOG:  last completed transaction was at log time 2025-11-22 04:52:33.1+00\n"
        "LOG:  last completed transaction was at log time 2025-11-22 04:59:00.5+00\n"
    )
    assert wrapper.recovered_to(log) == "2025-11-22 04:59:00.5+00"
    assert wrapper.recovered_to("nothing") is None


def test_lock_is_exclusive(tmp_path):
    lock = str(tmp_path / "lock")
    with wrapper.exclusive(lock) as first:
        assert first is True
        with wrapper.exclusive(lock) as second:
            assert second is False
    with wrapper.exclusive(lock) as again:
        assert again is True


def test_a_replica_run_reports_the_repository(tmp_path, monkeypatch):
    """On a replica the wrapper only refreshes the metrics from the repository."""

    class FakeCluster:
        stanza = "webstack"

        def __init__(self, config):
            self.calls = []

        def in_recovery(self):
            return True

        def pgbackrest(self, *args, **kwargs):
            raise AssertionError("a replica must not back up")

        def info(self):
            return info(backup("F1", "full", 100))

    monkeypatch.setattr(wrapper, "Cluster", FakeCluster)
    config = {"metrics_dir": str(tmp_path), "lock_file": str(tmp_path / "lock"), "stanza": "x"}
    assert wrapper.command_backup(config, "diff") == 0
    found = wrapper.parse_metrics((tmp_path / wrapper.METRICS_FILE).read_text())
    assert found["webstack_backup_last_run_success"] == {"postgresql_diff": 1.0}
    assert found["webstack_backup_last_success_timestamp_seconds"]["postgresql_full"] == 100


def test_a_primary_whose_backup_fails_reports_zero(tmp_path, monkeypatch):
    class FakeCluster:
        stanza = "webstack"

        def __init__(self, config):
            pass

        def in_recovery(self):
            return False

        def pgbackrest(self, *args, **kwargs):
            return type("Result", (), {"returncode": 82})()

        def info(self):
            return info(backup("F1", "full", 100))

    monkeypatch.setattr(wrapper, "Cluster", FakeCluster)
    config = {"metrics_dir": str(tmp_path), "lock_file": str(tmp_path / "lock"), "stanza": "x"}
    assert wrapper.command_backup(config, "incr") == 1
    found = wrapper.parse_metrics((tmp_path / wrapper.METRICS_FILE).read_text())
    assert found["webstack_backup_last_run_success"] == {"postgresql_incr": 0.0}
