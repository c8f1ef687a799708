"""Drills of the backups: the converge left a full backup; the primary's data
directory is destroyed and restore.yml brings the cluster back to the last
archived WAL; a point-in-time restore onto another member; the restore drill;
a Redis snapshot downloaded from S3, decrypted and loaded."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from drill import extra_vars, playbook, record, wait_for
from labhosts import host, hosts_in
from sitelab import postgresql_primary, psql, wait_until_healthy
from test_00_stack import redis_report

STANZA = "webstack"
DATA_DIR = "/var/lib/postgresql/17/main"
UNIT = "postgresql@17-main"
CHECKSUM = (
    "SELECT count(*) || '/' || md5(coalesce(string_agg(id, ',' ORDER BY id), '')) "
    "FROM webstack_writes"
)


@pytest.fixture(scope="module", autouse=True)
def healthy_lab():
    wait_until_healthy(what="before the backup drills")
    yield
    wait_until_healthy(timeout=180, what="after the backup drills")


def info(name: str) -> dict:
    out = host(name).check_output(
        f"runuser -u postgres -- pgbackrest --stanza={STANZA} --output=json info"
    )
    return json.loads(out)[0]


def archive_everything(name: str) -> None:
    """Close the current WAL segment and wait until pgBackRest has it."""
    segment = psql(name, "SELECT pg_walfile_name(pg_switch_wal())", "postgres")
    wait_for(
        lambda: (
            psql(name, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver", "postgres")
            >= segment
        ),
        timeout=60,
        what=f"archiving of {segment}",
    )


def test_the_converge_left_a_full_backup():
    backups = info(postgresql_primary())["backup"]
    assert any(b["type"] == "full" and not b.get("error") for b in backups), backups


def runs_on_patronis_configuration(primary: str) -> None:
    """The restored primary runs on Patroni's configuration, so what Patroni
    writes reaches it: the replica becomes the synchronous standby again (the
    lab runs synchronous mode)."""
    # Patroni's postgresql.conf (which includes the role's postgresql.base.conf).
    config = psql(primary, "SHOW config_file", "postgres")
    assert config == "/etc/postgresql/17/main/postgresql.conf", config
    wait_for(
        lambda: psql(primary, "SELECT sync_state FROM pg_stat_replication", "postgres") == "sync",
        60,
        what=f"a synchronous standby of the restored primary {primary}",
    )


def test_restore_latest_after_the_primary_lost_its_data():
    primary = postgresql_primary()
    marker = f"restore-drill-{uuid.uuid4().hex[:8]}"
    psql(primary, f"INSERT INTO webstack_writes (id, payload) VALUES ('{marker}', 'kept')")
    written = psql(primary, CHECKSUM)
    archive_everything(primary)
    host(primary).check_output(f"systemctl stop {UNIT} && rm -rf {DATA_DIR}")
    started = time.monotonic()
    run = playbook("playbooks/restore.yml", *extra_vars({"restore_confirm": STANZA}))
    restored_s = time.monotonic() - started
    new_primary = postgresql_primary()
    assert psql(new_primary, CHECKSUM) == written
    assert psql(new_primary, f"SELECT payload FROM webstack_writes WHERE id = '{marker}'") == "kept"
    wait_until_healthy(timeout=180, what="after the restore")
    runs_on_patronis_configuration(new_primary)
    for member in hosts_in("postgresql"):
        assert psql(member, CHECKSUM) == written
    timeline = psql(new_primary, "SELECT timeline_id FROM pg_control_checkpoint()", "postgres")
    assert int(timeline) >= 2
    record(
        "restore latest (data directory lost)",
        seconds=round(restored_s, 1),
        playbook_s=round(run.seconds, 1),
    )


def test_point_in_time_restore_onto_another_member():
    primary = postgresql_primary()
    other = next(h for h in hosts_in("postgresql") if h != primary)
    run_id = uuid.uuid4().hex[:8]
    psql(primary, f"INSERT INTO webstack_writes (id, payload) VALUES ('pitr-{run_id}-1', 'before')")
    target = psql(
        primary,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
        "postgres",
    )
    time.sleep(1)
    psql(primary, f"INSERT INTO webstack_writes (id, payload) VALUES ('pitr-{run_id}-2', 'after')")
    archive_everything(primary)
    started = time.monotonic()
    playbook(
        "playbooks/restore.yml",
        *extra_vars(
            {
                "restore_confirm": STANZA,
                "restore_target": "time",
                "restore_time": f"{target}+00",
                "restore_host": other,
                "restore_backup_after": False,
            }
        ),
    )
    seconds = time.monotonic() - started
    assert postgresql_primary() == other
    ids = psql(other, f"SELECT id FROM webstack_writes WHERE id LIKE 'pitr-{run_id}-%' ORDER BY id")
    assert ids.split() == [f"pitr-{run_id}-1"]
    wait_until_healthy(timeout=180, what="after the point-in-time restore")
    runs_on_patronis_configuration(other)
    record("point-in-time restore onto the other member", seconds=round(seconds, 1))


def test_restore_drill_passes_and_cleans_up():
    started = time.time()
    run = playbook("playbooks/restore_drill.yml")
    assert ": PASSED" in run.output
    for member in hosts_in("postgresql"):
        assert not host(member).file("/var/lib/postgresql/webstack-drill").exists
    drill_host = next(
        m
        for m in hosts_in("postgresql")
        if host(m)
        .file("/var/lib/prometheus/node-exporter/webstack_backup_restore_drill.prom")
        .exists
    )
    page = (
        host(drill_host)
        .file("/var/lib/prometheus/node-exporter/webstack_backup_restore_drill.prom")
        .content_string
    )
    assert "webstack_backup_restore_drill_last_run_success 1" in page
    record("restore drill", seconds=round(time.time() - started, 1), host=drill_host)


def test_redis_snapshot_is_uploaded_encrypted_and_restorable():
    # The job runs on every Redis host (as its timer does); one replica uploads.
    started = time.monotonic()
    since = int(time.time()) - 1
    uploaded = []
    for name in hosts_in("redis"):
        h = host(name)
        h.check_output("systemctl start webstack-redis-backup.service")
        journal = h.check_output(
            f"journalctl -u webstack-redis-backup.service --since @{since} --no-pager -o cat"
        )
        if "uploaded " in journal:
            uploaded.append(name)
    assert len(uploaded) == 1, f"expected one uploading host, got {uploaded}"
    h = host(uploaded[0])
    assert redis_report(uploaded[0])["server"]["role"] == "replica"
    h.check_output(
        "install -d -o redis -g redis /var/tmp/rdb-check && "
        "webstack-redis-backup fetch latest /var/tmp/rdb-check/dump.rdb && "
        "chown redis: /var/tmp/rdb-check/dump.rdb && "
        "runuser -u redis -- redis-server --port 6390 --bind 127.0.0.1 --dir /var/tmp/rdb-check "
        "--save '' --appendonly no --daemonize yes"
    )
    try:
        # The decrypted dataset is readable by its server's user only (not 0644 root).
        assert h.check_output("stat -c '%a %U' /var/tmp/rdb-check/dump.rdb") == "600 redis"
        wait_for(lambda: h.run("redis-cli -p 6390 PING").stdout.strip() == "PONG", timeout=20)
        # The page view counter the app keeps in Redis is in the snapshot.
        assert h.check_output("redis-cli -p 6390 EXISTS webstack:pageviews") == "1"
        keys = int(h.check_output("redis-cli -p 6390 DBSIZE"))
    finally:
        h.run("redis-cli -p 6390 SHUTDOWN NOSAVE; rm -rf /var/tmp/rdb-check")
    record(
        "redis snapshot to S3 and back",
        seconds=round(time.monotonic() - started, 1),
        uploaded_by=uploaded[0],
        keys=keys,
    )
