"""Drill of the database tier under write load through the load balancer:
a planned switchover (no failed request, no lost write). The converge of the
tier after the leader moved (changes nothing, does not move it back) runs
once, after the failover of test_45."""

from __future__ import annotations

import time

import pytest
from drill import load, playbook, record
from labhosts import host
from sitelab import CLIENT, SITE, postgresql_primary, psql, wait_until_healthy


@pytest.fixture(scope="module", autouse=True)
def healthy_lab():
    wait_until_healthy(what="before the PostgreSQL drills")
    yield
    wait_until_healthy(what="after the PostgreSQL drills")


def stored_ids(primary: str) -> set[str]:
    return set(psql(primary, "SELECT id FROM webstack_writes").split())


def test_planned_switchover_under_write_load_loses_nothing():
    before = postgresql_primary()
    started = time.monotonic()
    with load(host(CLIENT), SITE, rate=20, max_seconds=300) as summary:
        time.sleep(5)
        run = playbook("playbooks/postgresql_switchover.yml")
        time.sleep(5)
    after = postgresql_primary()
    assert after != before
    lost = set(summary["acked_writes"]) - stored_ids(after)
    record(
        "postgresql switchover under load",
        seconds=round(time.monotonic() - started, 1),
        playbook_s=round(run.seconds, 1),
        requests=summary["completed"],
        failed=summary["failed"],
        write_gap_max_s=summary["write_gap_max_s"],
        acked_writes=len(summary["acked_writes"]),
        lost_writes=len(lost),
    )
    assert summary["failed"] == 0, summary["failures"][:5]
    assert lost == set()
    assert len(summary["acked_writes"]) > 50
