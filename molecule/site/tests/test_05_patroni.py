"""Drill: the running cluster, built in manual mode, moves to Patroni under
write load through the load balancer (playbooks/postgresql_to_patroni.yml,
as an operator with an existing cluster would do it): etcd comes up, Patroni
adopts the running primary and the replica, PgBouncer moves to its local
HAProxy, a switchover hands the old primary over to Patroni. No acknowledged
write is lost; afterwards Patroni leads, the replica streams, the Debian
units are masked and a converge of the tier changes nothing. Every later
drill runs in Patroni mode."""

from __future__ import annotations

import json
import time

import pytest
from drill import load, playbook, record, wait_for
from labhosts import host, hosts_in
from sitelab import (
    CLIENT,
    SITE,
    address,
    postgresql_primary,
    prometheus,
    psql,
    wait_until_healthy,
)


@pytest.fixture(scope="module", autouse=True)
def healthy_lab():
    wait_until_healthy(what="before the move to Patroni")


def patroni_cluster() -> dict:
    out = host(CLIENT).check_output(
        f"curl -sk --max-time 5 https://{address(hosts_in('postgresql')[0])}:8008/cluster"
    )
    return json.loads(out)


def test_the_running_cluster_moves_to_patroni_without_losing_a_write():
    started = time.monotonic()
    with load(host(CLIENT), SITE, rate=20, max_seconds=900) as summary:
        time.sleep(5)
        run = playbook("playbooks/postgresql_to_patroni.yml")
        time.sleep(5)
    primary = postgresql_primary()
    lost = set(summary["acked_writes"]) - set(
        psql(primary, "SELECT id FROM webstack_writes").split()
    )
    record(
        "move a running cluster to Patroni under load",
        seconds=round(time.monotonic() - started, 1),
        playbook_s=round(run.seconds, 1),
        requests=summary["completed"],
        failed=summary["failed"],
        write_gap_max_s=summary["write_gap_max_s"],
        lost_writes=len(lost),
    )
    assert lost == set()
    assert summary["failed"] == 0, summary["failures"][:5]

    members = {m["name"]: m for m in patroni_cluster()["members"]}
    assert set(members) == set(hosts_in("postgresql"))
    leaders = [n for n, m in members.items() if m["role"] in ("leader", "primary", "master")]
    assert leaders == [primary]
    for name, member in members.items():
        if name != primary:
            assert member["state"] == "streaming", member
    for name in hosts_in("postgresql"):
        assert host(name).run("systemctl is-enabled postgresql@17-main").stdout.strip() == "masked"
        assert host(name).service("patroni@17-main").is_running


def test_a_converge_after_the_move_changes_nothing():
    run = playbook("playbooks/database.yml")
    assert run.changed_hosts() == {}, run.changed_tasks()
    wait_until_healthy(what="after the move to Patroni")


def test_prometheus_scrapes_patroni_and_etcd_after_the_move():
    # The move's last play turns the jobs on; every member answers, and the
    # series the Patroni and etcd alerts read exist.
    def targets() -> dict:
        active = prometheus("/api/v1/targets?state=active")["data"]["activeTargets"]
        return {
            (t["labels"]["job"], t["labels"]["instance"]): t["health"]
            for t in active
            if t["labels"]["job"] in ("patroni", "etcd")
        }

    wanted = {("patroni", n): "up" for n in hosts_in("postgresql")} | {
        ("etcd", n): "up" for n in hosts_in("etcd")
    }
    wait_for(lambda: targets() == wanted, 90, what="Patroni and etcd scraped")
    for metric, count in {
        "patroni_cluster_unlocked": len(hosts_in("postgresql")),
        "patroni_postgres_running": len(hosts_in("postgresql")),
        "patroni_pending_restart": len(hosts_in("postgresql")),
        "etcd_server_has_leader": len(hosts_in("etcd")),
        "etcd_mvcc_db_total_size_in_bytes": len(hosts_in("etcd")),
        "etcd_server_quota_backend_bytes": len(hosts_in("etcd")),
    }.items():
        result = prometheus(f"/api/v1/query?query={metric}")["data"]["result"]
        assert len(result) == count, (metric, result)
    # One leader: no member says the cluster is unlocked, every etcd member has a leader.
    unlocked = prometheus("/api/v1/query?query=max(patroni_cluster_unlocked)")["data"]["result"]
    assert unlocked[0]["value"][1] == "0"
    leaderless = prometheus("/api/v1/query?query=min(etcd_server_has_leader)")["data"]["result"]
    assert leaderless[0]["value"][1] == "1"
