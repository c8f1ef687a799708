"""Drill: the PostgreSQL primary's host dies under write load through the
load balancer (docker kill: no clean shutdown, its address stops answering)
and stays dead. Patroni promotes the replica within 30 s, the writes resume
by themselves (the app, PgBouncer and its HAProxy need no change), and no
acknowledged write is lost (synchronous replication). The host then comes
back and rejoins as a replica, and a converge of the tier changes nothing.
Then one etcd member dies: the app notices nothing. Then the restarts of
the rolling upgrade after new etcd and Patroni packages (every etcd member
one at a time, Patroni on the replica) under load: nothing fails, and the
same restart on the leader is refused."""

from __future__ import annotations

import itertools
import time

import pytest
from drill import kill_host, load, playbook, record, start_host, wait_for
from labhosts import host, hosts_in
from sitelab import CLIENT, SITE, address, postgresql_primary, psql, wait_until_healthy


@pytest.fixture(scope="module", autouse=True)
def healthy_lab():
    wait_until_healthy(what="before the PostgreSQL failover drill")
    yield
    wait_until_healthy(timeout=180, what="after the PostgreSQL failover drill")


def patroni(name: str, path: str) -> int:
    """Status of a GET on the Patroni REST API of ``name`` (0: no answer)."""
    out = host(CLIENT).run(
        f"curl -sk -o /dev/null -w '%{{http_code}}' --max-time 3 https://{address(name)}:8008{path}"
    )
    return int(out.stdout.strip() or 0)


# At 10 requests/s (every second one a write) writes are acknowledged about
# every 0.2 s; a pause of 2 s is an outage.
OUTAGE_GAP = 2.0


def first_write_after_outage(acked_at: list[float], killed_at: float) -> float | None:
    """Seconds from the kill to the first write the new primary acknowledged.

    Writes in flight when the host died may still be acknowledged just
    after the kill (committed on the old primary and its synchronous
    replica); the new primary's first write is the one that ends the first
    gap of at least OUTAGE_GAP seconds after the kill.
    """
    points = sorted(acked_at)
    for before, after in itertools.pairwise(points):
        if after > killed_at and after - before >= OUTAGE_GAP:
            return after - killed_at
    later = [t for t in points if t > killed_at]
    return (later[0] - killed_at) if later else None


def test_the_primary_host_dies_and_a_replica_takes_over_without_losing_a_write():
    old = postgresql_primary()
    survivors = [h for h in hosts_in("postgresql") if h != old]
    with load(host(CLIENT), SITE, rate=10, max_seconds=400) as summary:
        time.sleep(8)
        kill_host(old)
        # Taken once docker kill has returned: a write acknowledged before
        # that came from the old primary in its last moment, not from the
        # new one.
        killed_at = time.time()
        new = wait_for(
            lambda: next((h for h in survivors if patroni(h, "/primary") == 200), None),
            timeout=60,
            interval=0.5,
            what="a replica leading after the primary's host died",
        )
        leader_s = time.time() - killed_at
        time.sleep(15)
    first_write_s = first_write_after_outage(summary["acked_at"], killed_at)
    stored = set(psql(new, "SELECT id FROM webstack_writes").split())
    lost = set(summary["acked_writes"]) - stored
    record(
        "postgresql primary host killed (Patroni)",
        old=old,
        new=new,
        leader_s=round(leader_s, 1),
        first_write_s=round(first_write_s, 1) if first_write_s is not None else None,
        write_gap_max_s=summary["write_gap_max_s"],
        requests=summary["completed"],
        failed=summary["failed"],
        acked_writes=len(summary["acked_writes"]),
        lost_writes=len(lost),
    )
    assert leader_s < 30
    assert first_write_s is not None, "no write succeeded after the failover"
    assert lost == set(), f"{len(lost)} acknowledged writes are missing on {new}"

    started = time.time()
    start_host(old)
    wait_for(lambda: patroni(old, "/replica") == 200, timeout=120, what=f"{old} back as a replica")
    wait_for(
        lambda: (
            int(psql(new, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))
            == len(hosts_in("postgresql")) - 1
        ),
        timeout=60,
        what="every replica streaming from the new primary",
    )
    record("postgresql old primary rejoined", seconds=round(time.time() - started, 1))


def test_converge_after_the_failover_changes_nothing():
    primary = postgresql_primary()
    run = playbook("playbooks/database.yml")
    assert run.changed_hosts() == {}, run.changed_tasks()
    assert postgresql_primary() == primary


def test_one_etcd_member_dies_and_the_app_notices_nothing():
    primary = postgresql_primary()
    # The etcd member that is no database host (mon1); the load comes from an
    # app host meanwhile (the usual client, mon1, is the one that dies).
    victim = next(h for h in hosts_in("etcd") if h not in hosts_in("postgresql"))
    client = hosts_in("app")[0]
    with load(host(client), SITE, rate=10, max_seconds=200) as summary:
        time.sleep(5)
        kill_host(victim)
        time.sleep(40)
        assert postgresql_primary() == primary
        start_host(victim)
        time.sleep(5)
    record(
        "etcd member killed",
        member=victim,
        requests=summary["completed"],
        failed=summary["failed"],
        write_gap_max_s=summary["write_gap_max_s"],
    )
    assert summary["failed"] == 0, summary["failures"][:5]
    assert postgresql_primary() == primary


def main_pids(command: str) -> dict[str, str]:
    return {name: host(name).check_output(command) for name in hosts_in("etcd")}


def test_members_restart_one_at_a_time_under_load_and_the_leader_refuses():
    primary = postgresql_primary()
    replica = next(h for h in hosts_in("postgresql") if h != primary)
    client = hosts_in("app")[0]
    etcd_before = main_pids("systemctl show --property=MainPID --value etcd.service")
    patroni_pid = "pgrep --oldest --full '^/usr/bin/python3 /usr/bin/patroni'"
    patroni_before = host(replica).check_output(patroni_pid)
    started = time.monotonic()
    with load(host(client), SITE, rate=10, max_seconds=400) as summary:
        time.sleep(3)
        run = playbook("molecule/site/restart_members.yml", "-e", f"restart_patroni_on={replica}")
        time.sleep(3)
    record(
        "etcd members and Patroni restarted",
        seconds=round(time.monotonic() - started, 1),
        playbook_s=round(run.seconds, 1),
        requests=summary["completed"],
        failed=summary["failed"],
        write_gap_max_s=summary["write_gap_max_s"],
    )
    assert summary["failed"] == 0, summary["failures"][:5]
    etcd_after = main_pids("systemctl show --property=MainPID --value etcd.service")
    assert all(etcd_after[n] not in ("0", etcd_before[n]) for n in etcd_before), (
        etcd_before,
        etcd_after,
    )
    assert host(replica).check_output(patroni_pid) != patroni_before
    assert postgresql_primary() == primary
    wait_for(lambda: patroni(replica, "/replica") == 200, 60, what=f"{replica} streams again")

    refused = playbook(
        "molecule/site/restart_members.yml",
        "-e",
        f"restart_patroni_on={primary}",
        "-e",
        "restart_etcd=false",
        check=False,
    )
    assert refused.returncode != 0
    assert "leads the cluster" in refused.output
    assert postgresql_primary() == primary
