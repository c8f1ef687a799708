"""Drill of the database tier before Patroni (postgresql_ha_manager: manual,
as the cluster was built): a planned switchover with the role's own playbook
under write load loses nothing, and a converge of the tier afterwards changes
nothing and leaves the new primary where it is. That converge runs with
Ansible's own strategy (linear) and the lab_docker connection, the default
path of users; everything else in make test runs mitogen. test_05_patroni
then converts the cluster."""

from __future__ import annotations

import time

import pytest
from drill import load, playbook, record
from labhosts import host, hosts_in
from sitelab import CLIENT, SITE, postgresql_primary, psql, wait_until_healthy

MANUAL = ["-e", "postgresql_ha_manager=manual"]
# The default path of users: Ansible's linear strategy, no mitogen.
LINEAR = {"ANSIBLE_STRATEGY": "linear", "STACKOPS_LAB_CONNECTION": "lab_docker"}


@pytest.fixture(scope="module", autouse=True)
def healthy_lab():
    wait_until_healthy(what="before the manual-mode switchover")


def test_manual_switchover_under_write_load_loses_nothing():
    before = postgresql_primary()
    started = time.monotonic()
    with load(host(CLIENT), SITE, rate=20, max_seconds=300) as summary:
        time.sleep(5)
        run = playbook("playbooks/postgresql_switchover.yml", *MANUAL)
        time.sleep(5)
    after = postgresql_primary()
    assert after != before
    stored = set(psql(after, "SELECT id FROM webstack_writes").split())
    lost = set(summary["acked_writes"]) - stored
    record(
        "postgresql switchover, manual mode",
        seconds=round(time.monotonic() - started, 1),
        playbook_s=round(run.seconds, 1),
        requests=summary["completed"],
        failed=summary["failed"],
        write_gap_max_s=summary["write_gap_max_s"],
        lost_writes=len(lost),
    )
    assert summary["failed"] == 0, summary["failures"][:5]
    assert lost == set()


def test_converge_after_the_manual_switchover_changes_nothing():
    primary = postgresql_primary()
    run = playbook("playbooks/database.yml", *MANUAL, env=LINEAR)
    assert run.changed_hosts() == {}, run.changed_tasks()
    assert postgresql_primary() == primary
    streaming = psql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    assert int(streaming) == len(hosts_in("postgresql")) - 1
    record(
        "converge after the manual switchover (linear strategy)",
        seconds=round(run.seconds, 1),
        changed=0,
    )
