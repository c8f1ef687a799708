"""Drill: the rolling upgrade of every tier under a bounded load through the
load balancer (60 requests/s, every second one a write with its own id),
deploying a new release of the app. No request fails, no acknowledged write is
lost, the PostgreSQL primary and the Redis master move, and every app host
serves the new release afterwards."""

from __future__ import annotations

import shutil
import time

import pytest
from drill import EPHEMERAL, PROJECT, extra_vars, load, playbook, record
from labhosts import host, hosts_in
from sitelab import (
    CLIENT,
    SITE,
    app_releases,
    postgresql_primary,
    psql,
    wait_until_healthy,
)
from test_00_stack import redis_report


@pytest.fixture(scope="module")
def upgrade():
    wait_until_healthy(what="before the rolling upgrade")
    v2 = EPHEMERAL / "app-v2"
    if v2.exists():
        shutil.rmtree(v2)
    # The repository holds no build output (.gitignore): a plain copy.
    shutil.copytree(
        PROJECT / "examples" / "nextjs-app",
        v2,
        ignore=shutil.ignore_patterns("node_modules", ".next"),
    )
    (v2 / "public" / "VERSION").write_text("v2\n")
    before = {
        "primary": postgresql_primary(),
        "master": redis_report(hosts_in("redis")[0])["sentinel"]["master_host"],
    }
    started = time.monotonic()
    with load(host(CLIENT), SITE, rate=60, max_seconds=1500) as summary:
        time.sleep(7)
        run = playbook(
            "playbooks/rolling_upgrade.yml", *extra_vars({"nextjs_source_path": str(v2)})
        )
        time.sleep(10)
    after = {
        "primary": postgresql_primary(),
        "master": redis_report(hosts_in("redis")[0])["sentinel"]["master_host"],
    }
    lost = set(summary["acked_writes"]) - set(
        psql(after["primary"], "SELECT id FROM webstack_writes").split()
    )
    record(
        "rolling upgrade under load",
        seconds=round(time.monotonic() - started, 1),
        playbook_s=round(run.seconds, 1),
        requests=summary["completed"],
        rate_per_s=summary["rate_per_s"],
        failed=summary["failed"],
        p95_ms=summary["p95_ms"],
        p99_ms=summary["p99_ms"],
        write_gap_max_s=summary["write_gap_max_s"],
        lost_writes=len(lost),
    )
    return {"load": summary, "before": before, "after": after, "lost": lost}


def test_the_rolling_upgrade_dropped_no_request(upgrade):
    load_summary = upgrade["load"]
    assert load_summary["failed"] == 0, load_summary["failures"][:10]
    assert load_summary["completed"] == load_summary["issued"]
    assert load_summary["rate_per_s"] >= 50, {
        k: v for k, v in load_summary.items() if k != "acked_writes"
    }
    assert load_summary["duration_s"] > 120, "the load must span the upgrade"
    assert load_summary["stopped_by"] == "stop_file", load_summary["stopped_by"]


def test_no_acknowledged_write_was_lost(upgrade):
    assert len(upgrade["load"]["acked_writes"]) > 1000
    assert upgrade["lost"] == set()


def test_the_upgrade_moved_the_primary_and_the_master(upgrade):
    assert upgrade["before"]["primary"] != upgrade["after"]["primary"]
    assert upgrade["before"]["master"] != upgrade["after"]["master"]


def test_the_new_release_serves_on_every_app_host(upgrade):
    assert len(app_releases()) == 1
    for name in hosts_in("app"):
        version = host(name).file("/srv/webstack/current/public/VERSION")
        assert version.exists
        assert version.content_string.strip() == "v2"
    wait_until_healthy(what="after the rolling upgrade")
