"""Drill of the cache tier: the Redis master's host dies (docker kill, no clean
shutdown). Sentinel promotes a replica and the app counts page views again
without a change; the host comes back as a replica, and a converge of the
tier afterwards changes nothing and keeps Sentinel's choice."""

from __future__ import annotations

import re
import time

import pytest
from drill import kill_host, playbook, record, start_host, wait_for
from labhosts import hosts_in
from sitelab import address, through_lb, wait_until_healthy
from test_00_stack import redis_report

MARKER = re.compile(r"Page views counted in Redis: (\d+)")


@pytest.fixture(scope="module", autouse=True)
def healthy_lab():
    wait_until_healthy(what="before the Redis drill")
    yield
    wait_until_healthy(what="after the Redis drill")


def page_views() -> int | None:
    status, text = through_lb("/")
    found = MARKER.search(text) if status == 200 else None
    return int(found.group(1)) if found else None


def master_seen_from(name: str) -> str:
    report = redis_report(name)
    sentinel = report.get("sentinel") or {}
    return sentinel.get("master_host", "") if sentinel.get("quorum_ok") else ""


def test_killed_master_host_is_replaced_and_rejoins_as_replica():
    redis = hosts_in("redis")
    old_ip = master_seen_from(redis[0])
    old = next(n for n in redis if address(n) == old_ip)
    survivor = next(n for n in redis if n != old)
    assert page_views() is not None

    killed_at = time.monotonic()
    kill_host(old)
    try:
        new_ip = wait_for(
            lambda: (m := master_seen_from(survivor)) not in ("", old_ip) and m,
            timeout=60,
            interval=0.5,
            what="Sentinel naming a new master",
        )
        promoted_s = time.monotonic() - killed_at
        wait_for(lambda: page_views() is not None, timeout=60, interval=0.5, what="page views")
        app_back_s = time.monotonic() - killed_at
    finally:
        start_host(old)
    started_at = time.monotonic()

    def following() -> bool:
        server = redis_report(old).get("server", {})
        return (
            server.get("role") == "replica"
            and server.get("master_host") == new_ip
            and server.get("link_status") == "connected"
        )

    wait_for(
        following,
        timeout=90,
        what=f"{old} back as a replica of {new_ip}",
    )
    rejoin_s = time.monotonic() - started_at
    record(
        "redis master host killed",
        promoted_s=round(promoted_s, 1),
        app_counts_again_s=round(app_back_s, 1),
        rejoined_as_replica_s=round(rejoin_s, 1),
    )
    # Sentinel's down-after is 5 s: promotion within down-after + 10 s.
    assert promoted_s < 15


def test_converge_after_the_failover_changes_nothing():
    run = playbook("playbooks/cache.yml")
    assert run.changed_hosts() == {}, run.changed_tasks()
    masters = {master_seen_from(n) for n in hosts_in("redis")}
    assert len(masters) == 1
    assert page_views() is not None
