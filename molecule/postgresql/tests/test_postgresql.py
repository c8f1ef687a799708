"""Verify the database tier from outside: replication, PgBouncer, firewall, switchover.

The side effect switched the primary over from db1 to db2 while a client wrote
through PgBouncer, and converged the database playbook once more; these tests
run on the cluster as it is afterwards and ask it who is primary.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from labhosts import files_containing, host, journal_contains, tcp_probe

DB_HOSTS = ["db1", "db2"]
APP = "app1"
OUTSIDER = "mon1"
CONN = "dbname=app user=app sslmode=require connect_timeout=5"

# Commit a new value on the primary, then poll the replica until it shows it;
# prints the milliseconds between the commit and the first read that sees it.
VISIBILITY_SCRIPT = """
set -e
token=$(cat /proc/sys/kernel/random/uuid)
# lab_rows has no key: replace the marker row in one transaction (safe to re-run).
psql '@PRIMARY@' -XAtq \
  -c "DELETE FROM lab_rows WHERE id = -3; INSERT INTO lab_rows VALUES (-3, '$token')" >/dev/null
start=$(date +%s%N)
for i in $(seq 1 200); do
  if [ "$(psql '@REPLICA@' -XAtq -c "SELECT payload FROM lab_rows WHERE id = -3")" = "$token" ]
  then echo $(( ($(date +%s%N) - start) / 1000000 )); exit 0
  fi
done
exit 1
"""


def address(name: str) -> str:
    facts = host(name).ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def sql(name: str, query: str) -> str:
    """Run a query as postgres on a database host (local socket)."""
    return host(name).check_output(f"runuser -u postgres -- psql -XAtq -c {quote(query)}")


def client(target: str, query: str, port: int = 5432, database: str = "app"):
    """Run a query from the app host as the app user (password from its passfile)."""
    conn = CONN.replace("dbname=app", f"dbname={database}")
    dsn = quote(f"host={target} port={port} {conn}")
    return host(APP).run(f"psql {dsn} -XAtq -c {quote(query)}")


def quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def is_primary(name: str) -> bool:
    return sql(name, "SELECT pg_is_in_recovery()") == "f"


@pytest.fixture(scope="module")
def roles() -> dict[str, str]:
    primaries = [name for name in DB_HOSTS if is_primary(name)]
    assert len(primaries) == 1, f"exactly one primary expected, found {primaries}"
    primary = primaries[0]
    return {"primary": primary, "replica": next(n for n in DB_HOSTS if n != primary)}


@pytest.fixture(scope="module")
def evidence() -> dict:
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "switchover.json"
    assert path.exists(), "the side effect (switchover) did not leave its evidence"
    return json.loads(path.read_text())


def test_the_switchover_moved_the_primary_to_db2(roles):
    # The inventory still names db1; the cluster says db2.
    assert roles == {"primary": "db2", "replica": "db1"}


def test_the_old_primary_streams_from_the_new_one(roles):
    rows = sql(
        roles["primary"],
        "SELECT application_name || ' ' || state || ' ' || host(client_addr) "
        "FROM pg_stat_replication",
    )
    assert rows == f"{roles['replica']} streaming {address(roles['replica'])}"
    slot = sql(roles["primary"], "SELECT slot_name, active FROM pg_replication_slots")
    assert slot == f"node_{roles['replica']}|t"
    receiver = sql(roles["replica"], "SELECT status, sender_host FROM pg_stat_wal_receiver")
    assert receiver == f"streaming|{address(roles['primary'])}"
    # no slot left over from its time as primary
    assert sql(roles["replica"], "SELECT count(*) FROM pg_replication_slots") == "0"


def test_switchover_lost_no_committed_transaction(evidence):
    assert evidence["rows_after"] == evidence["rows_before"] == 10000
    assert evidence["checksum_after"] == evidence["checksum_before"]
    # Every insert the writer was told had committed is on the new primary.
    assert evidence["acked"] >= 100
    assert evidence["acked_present"] == evidence["acked"]
    # Clients waited in the paused PgBouncer instead of failing.
    assert evidence["failed"] == 0


def test_converging_after_the_switchover_changes_nothing(evidence):
    assert evidence["reconverge_recap"], "no recap from the second converge"
    assert evidence["reconverge_failed"] == 0
    assert evidence["reconverge_changed"] == 0, evidence["reconverge_recap"]


def test_new_primary_is_writable(roles):
    result = client(roles["primary"], "INSERT INTO lab_rows VALUES (-1, 'x') RETURNING id")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "-1"


def test_replica_refuses_writes(roles):
    result = client(roles["replica"], "INSERT INTO lab_rows VALUES (-2, 'x')")
    assert result.rc != 0
    assert "read-only transaction" in result.stderr


def test_a_row_written_on_the_primary_is_readable_on_the_replica_within_a_second(roles):
    # Measured on the client: commit on the primary, then poll the replica.
    script = VISIBILITY_SCRIPT.replace(
        "@PRIMARY@", f"host={roles['primary']} port=5432 {CONN}"
    ).replace("@REPLICA@", f"host={roles['replica']} port=5432 {CONN}")
    result = host(APP).run(f"bash -c {quote(script)}")
    assert result.rc == 0, result.stderr
    assert int(result.stdout.strip()) < 1000


def test_500_clients_through_pgbouncer_without_errors(roles):
    assert sql(roles["primary"], "SHOW max_connections") == "100"
    dsn = quote(f"host={roles['primary']} port=5432 {CONN}")
    init = host(APP).run(f"pgbench -i -s 5 -q {dsn}")
    assert init.rc == 0, init.stderr
    # Through the PgBouncer of the old primary's host: it must follow db2.
    run = host(APP).run(
        "bash -c "
        + quote(
            "ulimit -n 4096; pgbench -n -c 500 -j 4 -T 10 "
            f"'host={roles['replica']} port=6432 {CONN}' 2>&1"
        )
    )
    assert run.rc == 0, run.stdout[-2000:]
    assert "number of clients: 500" in run.stdout
    assert re.search(r"number of failed transactions: 0 \(", run.stdout), run.stdout[-2000:]
    processed = re.search(r"number of transactions actually processed: (\d+)", run.stdout)
    assert processed
    assert int(processed.group(1)) > 500
    assert "error" not in run.stdout.lower()


@pytest.mark.parametrize("name", DB_HOSTS)
def test_every_pgbouncer_points_at_the_current_primary(roles, name):
    writes = client(name, "SELECT host(inet_server_addr()), pg_is_in_recovery()", port=6432)
    assert writes.rc == 0, writes.stderr
    assert writes.stdout.strip() == f"{address(roles['primary'])}|f"
    reads = client(
        name, "SELECT host(inet_server_addr()), pg_is_in_recovery()", port=6432, database="app_ro"
    )
    assert reads.rc == 0, reads.stderr
    assert reads.stdout.strip() == f"{address(roles['replica'])}|t"


@pytest.mark.parametrize("port", [5432, 6432])
def test_tls_and_scram_are_required(roles, port):
    plain = host(APP).run(
        f"psql 'host={roles['primary']} port={port} dbname=app user=app sslmode=disable' "
        "-XAtc 'SELECT 1'"
    )
    assert plain.rc != 0
    wrong = host(APP).run(
        f"PGPASSFILE=/dev/null PGPASSWORD=wrong psql 'host={roles['primary']} port={port} {CONN}' "
        "-XAtc 'SELECT 1'"
    )
    assert wrong.rc != 0
    assert "authentication failed" in wrong.stderr
    ssl = client(roles["primary"], "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert ssl.stdout.strip() == "t"


def test_pg_hba_allows_only_scram_peer_and_certificates(roles):
    methods = sql(roles["primary"], "SELECT DISTINCT auth_method FROM pg_hba_file_rules").split()
    assert set(methods) <= {"peer", "scram-sha-256", "cert"}
    assert (
        sql(roles["primary"], "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL")
        == "0"
    )
    verifiers = sql(
        roles["primary"],
        "SELECT rolname || ':' || left(rolpassword, 13) FROM pg_authid "
        "WHERE rolpassword IS NOT NULL ORDER BY 1",
    ).splitlines()
    assert verifiers == ["app:SCRAM-SHA-256", "replicator:SCRAM-SHA-256"]


@pytest.mark.parametrize("port", [5432, 6432])
def test_a_host_outside_the_allowed_groups_cannot_connect(roles, port):
    target = address(roles["primary"])
    assert tcp_probe(host(APP), target, port).rc == 0
    assert tcp_probe(host(OUTSIDER), target, port).rc != 0


@pytest.mark.parametrize(("port", "metric"), [(9187, "pg_up 1"), (9127, "pgbouncer_up 1")])
def test_exporters_answer_the_monitoring_hosts_only(roles, port, metric):
    target = address(roles["primary"])
    metrics = host(OUTSIDER).run(f"curl -sf --max-time 5 http://{target}:{port}/metrics")
    assert metrics.rc == 0
    assert metric in metrics.stdout
    assert tcp_probe(host(APP), target, port).rc != 0


@pytest.mark.parametrize("name", DB_HOSTS)
def test_no_password_in_files_or_logs(name):
    secrets = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / ".secrets"
    app_password = (secrets / "postgresql_app_password").read_text().strip()
    replication_password = (secrets / "postgresql_replication_password").read_text().strip()
    # The journal first: nothing the test runs may have put a secret there yet.
    assert not journal_contains(host(name), app_password)
    assert not journal_contains(host(name), replication_password)
    paths = "/etc/postgresql /etc/pgbouncer /etc/default /var/log/postgresql /var/lib/postgresql"
    found = files_containing(
        host(name),
        [app_password, replication_password],
        paths,
        "--exclude-dir=base --exclude-dir=pg_wal --exclude-dir=global",
    )
    # Only the replication passfile (mode 0600, owner postgres) holds a password.
    assert found == ["/var/lib/postgresql/.pgpass-replication"]
    passfile = host(name).file("/var/lib/postgresql/.pgpass-replication")
    assert passfile.mode == 0o600
    assert passfile.user == "postgres"


@pytest.mark.parametrize("name", DB_HOSTS)
def test_pgbouncer_userlist_holds_no_password(name):
    lines = [
        line
        for line in host(name).file("/etc/pgbouncer/userlist.txt").content_string.splitlines()
        if line and not line.startswith((";", "#"))
    ]
    assert lines == ['"postgres" ""', '"prometheus" ""']
    ini = host(name).file("/etc/pgbouncer/pgbouncer.ini").content_string
    assert "pool_mode = transaction" in ini
    assert "auth_user = pgbouncer_auth" in ini


def test_members_form_one_cluster_with_checksums(roles):
    ids = {sql(n, "SELECT system_identifier FROM pg_control_system()") for n in DB_HOSTS}
    assert len(ids) == 1
    assert sql(roles["primary"], "SHOW data_checksums") == "on"
    assert sql(roles["primary"], "SHOW password_encryption") == "scram-sha-256"
    assert sql(roles["primary"], "SHOW shared_buffers") == "256MB"
