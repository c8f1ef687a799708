"""Drills of the load balancer tier: a bad nginx directive never reaches the
running nginx, and an app server is drained and put back under load without a
failed request."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from drill import extra_vars, load, playbook, record, wait_for
from labhosts import host
from sitelab import CLIENT, SITE, address, prometheus, wait_until_healthy

CONFIG_FILES = [
    "/etc/nginx/nginx.conf",
    "/etc/nginx/webstack/upstream.conf",
    "/etc/nginx/webstack/proxy.conf",
    "/etc/nginx/webstack/site.conf",
]


@pytest.fixture(scope="module", autouse=True)
def healthy_lab():
    wait_until_healthy(what="before the load balancer drills")
    yield
    wait_until_healthy(what="after the load balancer drills")


def served_by(count: int) -> list[str]:
    """The app host that answered each of ``count`` health requests through lb1."""
    hosts = []
    for _ in range(count):
        out = host(CLIENT).check_output(
            f"curl -sk --max-time 10 --resolve {SITE}:443:{address('lb1')} https://{SITE}/api/health"
        )
        hosts.append(json.loads(out)["host"])
    return hosts


def probe(job: str, instance: str) -> str:
    """The latest probe_success of a blackbox probe ("1", "0"; "" before the first)."""
    query = f"probe_success{{job=%22{job}%22,instance=%22{instance}%22}}"
    result = prometheus("/api/v1/query?query=" + query)["data"]["result"]
    return result[0]["value"][1] if result else ""


def nginx_state() -> tuple[dict, str]:
    lb = host("lb1")
    files = {f: hashlib.sha256(lb.file(f).content).hexdigest() for f in CONFIG_FILES}
    return files, lb.check_output("cat /run/nginx.pid")


def test_a_bad_directive_is_refused_and_nginx_keeps_serving():
    before = nginx_state()
    started = time.monotonic()
    bad = playbook(
        "playbooks/loadbalancers.yml",
        *extra_vars({"nginx_extra_server_config": ["no_such_directive on;"]}),
        check=False,
    )
    assert bad.returncode != 0
    assert "nginx rejected the new configuration" in bad.output
    assert 'unknown directive "no_such_directive"' in bad.output
    # Same files, the same master process (never restarted), no backup left.
    assert nginx_state() == before
    assert host("lb1").run("nginx -t -q").rc == 0
    assert host("lb1").check_output("find /etc/nginx -name '*~' | wc -l") == "0"
    assert set(served_by(4)) == {"app1", "app2"}
    record("nginx bad directive refused", seconds=round(time.monotonic() - started, 1))


def upstream_conf() -> str:
    return host("lb1").file("/etc/nginx/webstack/upstream.conf").content_string


def test_drain_and_undrain_an_app_server_under_load():
    started = time.monotonic()
    with load(host(CLIENT), SITE, rate=20, max_seconds=300) as summary:
        drained = playbook("playbooks/app_drain.yml", "--limit", "app2")
        assert "down; # app2" in upstream_conf()
        assert set(served_by(6)) == {"app1"}

        # The last server in the pool is not drained (nginx_drain_force: false).
        last = playbook("playbooks/app_drain.yml", "--limit", "app1", check=False)
        assert last.returncode != 0
        assert "last active server" in last.output
        assert "down; # app1" not in upstream_conf()

        # A converge of the tier in the middle of maintenance keeps app2 drained.
        again = playbook("playbooks/loadbalancers.yml")
        assert again.changed_hosts() == {}, again.changed_tasks()
        assert "down; # app2" in upstream_conf()

        playbook(
            "playbooks/app_drain.yml",
            "--limit",
            "app2",
            *extra_vars({"webstack_drain_action": "undrain"}),
        )
        wait_for(
            lambda: set(served_by(4)) == {"app1", "app2"}, timeout=30, what="app2 back in the pool"
        )
    assert summary["failed"] == 0, summary["failures"][:5]
    assert summary["completed"] > 100
    record(
        "drain and undrain under load",
        seconds=round(time.monotonic() - started, 1),
        drain_seconds=round(drained.seconds, 1),
        requests=summary["completed"],
        failed=summary["failed"],
    )


def test_a_dead_app_server_costs_no_read():
    started = time.monotonic()
    with load(host(CLIENT), SITE, rate=20, max_seconds=120, writes=False) as summary:
        host("app2").check_output("systemctl stop pm2-webstack")
        try:
            assert set(served_by(10)) == {"app1"}
            # Monitoring sees it from outside: app2's health probe fails while
            # the site, asked through the load balancer, still answers.
            wait_for(lambda: probe("probe_app", "app2") == "0", timeout=60, what="app2 probe fails")
            assert probe("probe_site", "lb1") == "1"
        finally:
            host("app2").check_output("systemctl start pm2-webstack")
        wait_for(lambda: set(served_by(4)) == {"app1", "app2"}, timeout=60, what="app2 back")
    assert summary["failed"] == 0, summary["failures"][:5]
    record(
        "app server stopped (reads)",
        seconds=round(time.monotonic() - started, 1),
        requests=summary["completed"],
        failed=summary["failed"],
    )
