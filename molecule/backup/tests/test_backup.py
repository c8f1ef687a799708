"""Backups and restores, checked from outside the database hosts.

The tests run in file order and build on each other: data is loaded and
backed up, more data is written, the primary's data directory is destroyed and
restore.yml brings the cluster back to the last archived WAL; then a
point-in-time restore onto the other host, the restore drill, the Redis
snapshot path and the metrics.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from labhosts import host, tcp_probe, wait_for

PRIMARY, REPLICA, S3 = "db1", "db2", "s3"
MEMBERS = [PRIMARY, REPLICA]
STANZA = "webstack"
DATA_DIR = "/var/lib/postgresql/17/main"
METRICS = "/var/lib/prometheus/node-exporter"
ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
# What the tests carry from one step to the next.
STATE: dict[str, str] = {}
CHECKSUM = (
    "SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) "
    "|| '/' || (SELECT count(*) FROM pgbench_history) FROM pgbench_accounts"
)


def psql(name: str, sql: str, database: str = "postgres") -> str:
    return host(name).check_output(
        f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {database} -c {shlex.quote(sql)}"
    )


def pg_answers(name: str) -> bool:
    return host(name).run("runuser -u postgres -- pg_isready -q").rc == 0


def info(name: str = PRIMARY) -> dict:
    out = host(name).check_output(
        f"runuser -u postgres -- pgbackrest --stanza={STANZA} --output=json info"
    )
    return json.loads(out)[0]


def metrics(name: str, file: str) -> dict[str, float]:
    found = {}
    for line in host(name).file(f"{METRICS}/{file}").content_string.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found


def archive_everything(name: str) -> None:
    """Close the current WAL segment and wait until pgBackRest has it in the repository."""
    segment = psql(name, "SELECT pg_walfile_name(pg_switch_wal())")
    wait_for(
        lambda: (
            psql(name, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment
        ),
        timeout=60,
        what=f"archiving of {segment}",
    )


def playbook(name: str, *extra_vars: str, timeout: int = 420) -> subprocess.CompletedProcess:
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    args = [
        "ansible-playbook",
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        str(ROOT / "playbooks" / f"{name}.yml"),
    ]
    for var in extra_vars:
        args += ["-e", var]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ephemeral / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def streaming_replica_of(primary: str, replica: str) -> bool:
    rows = psql(primary, "SELECT application_name, state FROM pg_stat_replication")
    return f"{replica}|streaming" in rows.splitlines()


# ------------------------------------------------------------------ schedules
@pytest.mark.parametrize("name", MEMBERS)
def test_backup_timers_are_enabled_on_every_member(name):
    h = host(name)
    for kind in ("full", "diff", "incr"):
        timer = f"webstack-pgbackrest-{kind}.timer"
        assert h.service(timer).is_enabled, timer
        assert h.service(timer).is_running, timer
        assert h.check_output(f"systemctl show -P NextElapseUSecRealtime {timer}") != ""
    full = h.check_output("systemctl show -P TimersCalendar webstack-pgbackrest-full.timer")
    assert "Sun *-*-* 01:00:00" in full


def test_drill_timer_only_on_the_drill_host():
    assert host(REPLICA).service("webstack-pgbackrest-drill.timer").is_enabled
    assert not host(PRIMARY).file("/etc/systemd/system/webstack-pgbackrest-drill.timer").exists


def test_redis_snapshot_timer_is_enabled():
    assert host(REPLICA).service("webstack-redis-backup.timer").is_enabled
    assert host(REPLICA).service("webstack-redis-backup.timer").is_running


def test_secrets_file_is_private():
    conf = host(PRIMARY).file("/etc/pgbackrest/pgbackrest.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "postgres", 0o640)
    assert "repo1-cipher-type=aes-256-cbc" in conf.content_string
    settings = host(REPLICA).file("/etc/webstack/redis-backup.json")
    assert (settings.user, settings.mode) == ("root", 0o600)


# ------------------------------------------------------ archiving and servers
def test_wal_is_archived_through_pgbackrest_every_minute():
    assert psql(PRIMARY, "SHOW archive_mode") == "on"
    assert psql(PRIMARY, "SHOW archive_command") == f"pgbackrest --stanza={STANZA} archive-push %p"
    assert psql(PRIMARY, "SHOW archive_timeout") == "1min"
    check = host(PRIMARY).run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} check")
    assert check.rc == 0, check.stderr


def test_pgbackrest_server_port_is_open_to_the_members_only():
    replica_ip = host(REPLICA).check_output("hostname -i").split()[0]
    assert tcp_probe(host(PRIMARY), replica_ip, 8432).rc == 0
    assert tcp_probe(host(S3), replica_ip, 8432).rc != 0


# ------------------------------------------------------------ backup, restore
def test_the_converge_took_the_first_full_backup():
    # pgbackrest_first_backup: a new stanza gets a restore point at once.
    assert [b["type"] for b in info()["backup"]] == ["full"]


def test_full_backup_is_taken_by_the_primary_from_the_replica():
    psql(PRIMARY, "CREATE DATABASE bench")
    host(PRIMARY).check_output("runuser -u postgres -- pgbench -i -s 2 -q bench")
    STATE["loaded"] = psql(PRIMARY, CHECKSUM, "bench")
    # The scheduled path: the same service the timers start, on both members.
    for name in MEMBERS:
        host(name).check_output("systemctl start webstack-pgbackrest@full.service")
    backups = info()["backup"]
    assert [b["type"] for b in backups] == ["full", "full"]
    journal = host(PRIMARY).check_output(
        "journalctl -u webstack-pgbackrest@full.service --no-pager -o cat"
    )
    assert "replay on the standby reached" in journal, "files were not copied from the replica"
    assert "this host is a replica" in host(REPLICA).check_output(
        "journalctl -u webstack-pgbackrest@full.service --no-pager -o cat"
    )
    STATE["full_stop"] = str(backups[-1]["timestamp"]["stop"])


@pytest.mark.parametrize("name", MEMBERS)
def test_every_member_reports_the_backup_age(name):
    found = metrics(name, "webstack_backup_postgresql.prom")
    stop = float(STATE["full_stop"])
    for kind in ("full", "diff", "incr"):
        key = f'webstack_backup_last_success_timestamp_seconds{{kind="postgresql_{kind}"}}'
        assert found[key] == stop
    assert found['webstack_backup_last_run_success{kind="postgresql_full"}'] == 1


def test_repository_content_is_encrypted():
    script = (
        "import boto3; s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:5000', "
        "region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x'); "
        "print(s3.get_object(Bucket='webstack-backups', "
        "Key='molecule/postgresql/backup/webstack/backup.info')['Body'].read()[:8])"
    )
    head = host(S3).check_output(f"/opt/moto/bin/python -c {shlex.quote(script)}")
    assert head == "b'Salted__'", head


def test_restore_refuses_to_run_without_confirmation():
    result = playbook("restore")
    assert result.returncode != 0
    assert "restore_confirm=webstack" in result.stdout + result.stderr
    assert pg_answers(PRIMARY), "nothing may be stopped"
    assert pg_answers(REPLICA), "nothing may be stopped"


def test_restore_latest_after_the_primary_was_destroyed():
    host(PRIMARY).check_output("runuser -u postgres -- pgbench -n -c 2 -t 200 bench")
    STATE["written"] = psql(PRIMARY, CHECKSUM, "bench")
    assert STATE["written"] != STATE["loaded"]
    archive_everything(PRIMARY)
    host(PRIMARY).check_output(f"systemctl stop postgresql@17-main && rm -rf {DATA_DIR}")

    result = playbook("restore", "restore_confirm=webstack")
    assert result.returncode == 0, result.stdout[-3000:]

    assert psql(PRIMARY, "SELECT pg_is_in_recovery()") == "f"
    assert psql(PRIMARY, CHECKSUM, "bench") == STATE["written"]
    wait_for(lambda: streaming_replica_of(PRIMARY, REPLICA), timeout=60, what="db2 streaming")
    assert psql(REPLICA, CHECKSUM, "bench") == STATE["written"]
    timeline = psql(PRIMARY, "SELECT timeline_id FROM pg_control_checkpoint()")
    assert int(timeline) >= 2
    # restore.yml took a new full backup on the new timeline, again from the replica.
    assert [b["type"] for b in info()["backup"]] == ["full", "full", "full"]


def test_point_in_time_restore_onto_the_other_member():
    psql(PRIMARY, "CREATE TABLE pitr_marker (id int PRIMARY KEY, note text)", "bench")
    psql(PRIMARY, "INSERT INTO pitr_marker VALUES (1, 'first')", "bench")
    target = psql(
        PRIMARY, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    )
    psql(PRIMARY, "INSERT INTO pitr_marker VALUES (2, 'second')", "bench")
    archive_everything(PRIMARY)

    result = playbook(
        "restore",
        "restore_confirm=webstack",
        "restore_target=time",
        f"restore_time='{target}+00'",
        f"restore_host={REPLICA}",
        "restore_backup_after=false",
    )
    assert result.returncode == 0, result.stdout[-3000:]

    assert psql(REPLICA, "SELECT pg_is_in_recovery()") == "f"
    assert psql(REPLICA, "SELECT note FROM pitr_marker ORDER BY id", "bench") == "first"
    wait_for(lambda: streaming_replica_of(REPLICA, PRIMARY), timeout=60, what="db1 streaming")
    assert psql(PRIMARY, "SELECT note FROM pitr_marker ORDER BY id", "bench") == "first"


def test_restore_drill_passes_and_cleans_up():
    started = time.time()
    result = playbook("restore_drill")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "restore drill on db1: PASSED" in result.stdout  # db1 is the replica now
    drill_host = host(PRIMARY)
    assert not drill_host.file("/var/lib/postgresql/webstack-drill").exists
    assert drill_host.run("ss -Hlnx | grep -q 54329").rc != 0
    found = metrics(PRIMARY, "webstack_backup_restore_drill.prom")
    assert found["webstack_backup_restore_drill_last_run_success"] == 1
    assert found["webstack_backup_restore_drill_last_success_timestamp_seconds"] >= int(started)


# ---------------------------------------------------------------------- Redis
def test_redis_snapshot_is_uploaded_encrypted_and_restorable():
    redis = host(REPLICA)
    redis.check_output("redis-cli SET backup:probe restored-from-s3")
    redis.check_output("systemctl start webstack-redis-backup.service")
    assert "this host is the master and no replica is online" in redis.check_output(
        "journalctl -u webstack-redis-backup.service --no-pager -o cat"
    )
    script = (
        "import boto3; s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:5000', "
        "region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x'); "
        "keys = [o['Key'] for o in s3.list_objects_v2(Bucket='webstack-backups', "
        "Prefix='molecule/redis/webstack/')['Contents']]; "
        "print(keys[-1], s3.get_object(Bucket='webstack-backups', Key=keys[-1])['Body'].read()[:5])"
    )
    listing = host(S3).check_output(f"/opt/moto/bin/python -c {shlex.quote(script)}")
    key, head = listing.split(" ", 1)
    assert key.endswith("-db2.rdb.gpg")
    assert head != "b'REDIS'", "the snapshot must not be stored in plain text"
    # Download, decrypt and load it into a throwaway server on another port.
    redis.check_output(
        "install -d -o redis -g redis /tmp/rdb-check && "
        "webstack-redis-backup fetch latest /tmp/rdb-check/dump.rdb && "
        "chown redis: /tmp/rdb-check/dump.rdb && "
        "runuser -u redis -- redis-server --port 6390 --dir /tmp/rdb-check --save '' "
        "--appendonly no --daemonize yes"
    )
    try:
        wait_for(lambda: redis.run("redis-cli -p 6390 PING").stdout.strip() == "PONG", timeout=20)
        assert redis.check_output("redis-cli -p 6390 GET backup:probe") == "restored-from-s3"
    finally:
        redis.run("redis-cli -p 6390 SHUTDOWN NOSAVE; rm -rf /tmp/rdb-check")


def test_node_exporter_serves_the_backup_metrics():
    page = host(REPLICA).check_output("curl -sf http://127.0.0.1:9100/metrics")
    for kind in ("postgresql_full", "postgresql_diff", "postgresql_incr", "redis_rdb"):
        assert f'webstack_backup_last_success_timestamp_seconds{{kind="{kind}"}}' in page, kind
    assert 'webstack_backup_last_run_success{kind="redis_rdb"} 1' in page
    assert "node_textfile_scrape_error 0" in page
