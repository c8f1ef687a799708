"""The snapshot script of the redis_backup role: who uploads, keys, retention, metrics."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import stat
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles" / "redis_backup" / "files" / "webstack_redis_backup.py"


def _load():
    spec = importlib.util.spec_from_file_location("webstack_redis_backup", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["webstack_redis_backup"] = module
    spec.loader.exec_module(module)
    return module


snap = _load()

MASTER_INFO = """# Replication
role:master
connected_slaves:3
slave0:ip=10.0.3.13,port=6379,state=online,offset=1000,lag=0
slave1:ip=10.0.3.12,port=6379,state=online,offset=1000,lag=1
slave2:ip=10.0.3.11,port=6379,state=wait_bgsave,offset=0,lag=0
master_replid:abc
"""
REPLICA_INFO = """# Replication
role:slave
master_host:10.0.3.10
master_port:6379
master_link_status:up
"""


def test_info_parsing_and_online_replicas():
    info = snap.parse_info(MASTER_INFO)
    assert info["role"] == "master"
    assert info["connected_slaves"] == "3"
    # Sorted by address; the one still syncing does not count.
    assert snap.online_replicas(info) == [("10.0.3.12", 6379), ("10.0.3.13", 6379)]


@pytest.mark.parametrize(
    ("me", "upload"),
    [(("10.0.3.12", 6379), True), (("10.0.3.13", 6379), False), (("10.0.3.11", 6379), False)],
)
def test_exactly_the_first_online_replica_uploads(me, upload):
    master = snap.parse_info(MASTER_INFO)
    decided, why = snap.decide(snap.parse_info(REPLICA_INFO), master, me)
    assert decided is upload, why


def test_the_master_uploads_only_without_online_replicas():
    master = snap.parse_info(MASTER_INFO)
    assert snap.decide(master, None, ("10.0.3.10", 6379)) == (
        False,
        "the replica 10.0.3.12:6379 uploads",
    )
    alone = snap.parse_info("role:master\nconnected_slaves:0\n")
    assert snap.decide(alone, None, ("10.0.3.10", 6379))[0] is True
    assert snap.decide(master, None, ("10.0.3.10", 6379), source="master")[0] is True


def test_a_replica_without_link_or_master_does_not_upload():
    down = snap.parse_info(REPLICA_INFO.replace("link_status:up", "link_status:down"))
    assert snap.decide(down, snap.parse_info(MASTER_INFO), ("10.0.3.12", 6379)) == (
        False,
        "this replica's link to the master is down",
    )
    replica = snap.parse_info(REPLICA_INFO)
    assert snap.decide(replica, None, ("10.0.3.12", 6379))[0] is False
    assert (
        snap.decide(replica, snap.parse_info(MASTER_INFO), ("10.0.3.12", 6379), "master")[0]
        is False
    )


def test_object_key():
    now = dt.datetime(2025, 11, 22, 10, 15, 3, tzinfo=dt.UTC)
    assert (
        snap.object_key("prod/redis/", "webstack", "redis2", now)
        == "prod/redis/webstack/20251122T101503Z-redis2.rdb.gpg"
    )
    assert snap.object_key("", "webstack", "r1", now) == "webstack/20251122T101503Z-r1.rdb.gpg"


def test_retention_keeps_the_newest_and_drops_the_old():
    now = dt.datetime(2025, 11, 22, tzinfo=dt.UTC)
    objects = [
        {"Key": f"k{age}", "LastModified": now - dt.timedelta(days=age)} for age in (1, 5, 20, 30)
    ]
    assert sorted(snap.expired(objects, now, days=14, keep=1)) == ["k20", "k30"]
    # Old snapshots survive when they are among the newest few (backups stopped for a while).
    assert snap.expired(objects, now, days=2, keep=3) == ["k30"]
    assert snap.newest(objects)["Key"] == "k1"
    assert snap.newest([]) is None


def test_metrics_text():
    text = snap.render_metrics(1700000000.7, True, 1700000100)
    assert 'webstack_backup_last_success_timestamp_seconds{kind="redis_rdb"} 1700000000\n' in text
    assert 'webstack_backup_last_run_success{kind="redis_rdb"} 1\n' in text
    assert "# TYPE webstack_backup_last_run_timestamp_seconds gauge" in text
    failed = snap.render_metrics(None, False, 5)
    assert "last_success" not in failed
    assert 'webstack_backup_last_run_success{kind="redis_rdb"} 0\n' in failed


def test_write_atomic(tmp_path):
    target = tmp_path / "x.prom"
    snap.write_atomic(target, "a 1\n")
    assert target.read_text() == "a 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.prom"]


def test_a_fetched_snapshot_is_private_to_the_servers_user(tmp_path):
    data = tmp_path / "redis"
    data.mkdir()
    # The data directory belongs to the server's user (as root: another one).
    ids = (4321, 4321) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(data, *ids)
    owner = snap.snapshot_owner({"rdb_file": str(data / "dump.rdb")})
    assert owner == ids
    target = tmp_path / "dump.rdb"
    with snap.private_file(str(target), owner) as out:
        out.write(b"REDIS0011")
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == owner
    assert target.read_bytes() == b"REDIS0011"
    assert snap.snapshot_owner({"rdb_file": str(tmp_path / "missing" / "dump.rdb")}) is None


def test_a_fetch_replaces_a_link_and_leaves_nothing_when_it_fails(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    target = tmp_path / "dump.rdb"
    target.symlink_to(elsewhere)

    def failed_fetch():
        with snap.private_file(str(target), None) as out:
            out.write(b"partial")
            raise snap.SnapshotError("gpg failed")

    with pytest.raises(snap.SnapshotError):
        failed_fetch()
    assert target.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.rdb", "elsewhere"]
    with snap.private_file(str(target), None) as out:
        out.write(b"REDIS0011")
    assert not target.is_symlink()
    assert elsewhere.read_text() == "untouched"
