"""The whole stack, from outside: a request through the load balancer reaches
the app, which reads and writes PostgreSQL through PgBouncer and Redis through
Sentinel; the rolling upgrade of every tier dropped no request and lost no
acknowledged write."""

from __future__ import annotations

import json
import os
from pathlib import Path
from shlex import quote

import pytest
from labhosts import host, hosts_in

EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "."))
CLIENT = "mon1"  # in group monitoring: allowlisted from the rate limit, like the load


def address(name: str) -> str:
    facts = host(name).ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def through_lb(path: str, method: str = "GET", data: str | None = None) -> tuple[int, str]:
    """HTTPS request from the client host through the load balancer."""
    body = f"-H 'Content-Type: application/json' --data {quote(data)}" if data else ""
    out = host(CLIENT).check_output(
        f"curl -sk --max-time 20 -o /dev/stdout -w '\\n%{{http_code}}' -X {method} {body} "
        f"--resolve lb1:443:{address('lb1')} https://lb1{path}"
    )
    text, _, status = out.rpartition("\n")
    return int(status), text


def psql(name: str, query: str) -> str:
    return host(name).check_output(f"runuser -u postgres -- psql -XAtq -d app -c {quote(query)}")


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads((EPHEMERAL / "site-upgrade.json").read_text())


@pytest.fixture(scope="module")
def load() -> dict:
    return json.loads((EPHEMERAL / "loadgen.json").read_text())


def test_https_through_the_lb_reaches_a_healthy_app():
    status, text = through_lb("/api/health")
    assert status == 200, text
    health = json.loads(text)
    assert health["status"] == "ok"
    assert health["checks"]["postgresql"]["configured"] is True
    assert health["checks"]["postgresql"]["ok"] is True
    assert health["checks"]["postgresql"]["in_recovery"] is False
    assert health["checks"]["redis"]["configured"] is True
    assert health["checks"]["redis"]["ok"] is True


def test_the_apps_metrics_are_not_public_but_prometheus_reads_them():
    status, _ = through_lb("/api/metrics")
    assert status == 404
    direct = host(CLIENT).check_output(
        f"curl -sf --max-time 10 http://{address('app1')}:3000/api/metrics"
    )
    assert "# TYPE" in direct


def test_a_write_through_the_lb_lands_in_postgresql_and_reads_back():
    status, text = through_lb(
        "/api/writes", "POST", json.dumps({"id": "site-e2e-1", "payload": "e2e"})
    )
    assert status in (200, 201), text
    status, text = through_lb("/api/writes?prefix=site-e2e-")
    assert status == 200, text
    assert json.loads(text)["count"] == 1
    primary = next(
        h for h in hosts_in("postgresql") if psql(h, "SELECT pg_is_in_recovery()") == "f"
    )
    assert psql(primary, "SELECT payload FROM webstack_writes WHERE id = 'site-e2e-1'") == "e2e"


def test_the_page_counts_views_in_redis_through_sentinel():
    counts = []
    for _ in range(2):
        status, text = through_lb("/")
        assert status == 200
        marker = "Page views counted in Redis: "
        assert marker in text, text[:500]
        counts.append(int(text.split(marker, 1)[1].split("<", 1)[0]))
    assert counts[1] > counts[0]


def test_the_rolling_upgrade_dropped_no_request(load):
    assert load["failed"] == 0, load["failures"][:10]
    assert load["completed"] == load["issued"]
    # >= 50 requests/s for the whole upgrade, measured over the whole run.
    assert load["rate_per_s"] >= 50, load
    assert load["duration_s"] > 120, "the load must span the upgrade"
    # Ended by the side effect after the last tier, not by its own time limit.
    assert load["stopped_by"] == "stop_file", load["stopped_by"]


def test_no_acknowledged_write_was_lost(load):
    acked = set(load["acked_writes"])
    assert len(acked) > 1000
    primary = next(
        h for h in hosts_in("postgresql") if psql(h, "SELECT pg_is_in_recovery()") == "f"
    )
    stored = set(psql(primary, "SELECT id FROM webstack_writes").split())
    assert acked - stored == set()


def test_the_upgrade_moved_the_primary_and_the_master(record):
    assert len(record["postgresql_primary_before"]) == 1
    assert len(record["postgresql_primary_after"]) == 1
    assert record["postgresql_primary_before"] != record["postgresql_primary_after"]
    assert record["redis_master_before"] != record["redis_master_after"]


def secret(name: str) -> str:
    return (
        (Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / ".secrets" / name).read_text().strip()
    )


def test_the_new_release_serves_on_every_app_host():
    releases = set()
    for name in hosts_in("app"):
        linked = Path(host(name).file("/srv/webstack/current").linked_to).name
        health = json.loads(
            host(name).check_output(
                f"curl -sf --max-time 10 http://{address(name)}:3000/api/health"
            )
        )
        assert health["release"] == linked
        releases.add(linked)
    assert len(releases) == 1
    # The release the upgrade deployed carries the VERSION file of the side effect.
    name = hosts_in("app")[0]
    version = host(name).file("/srv/webstack/current/public/VERSION")
    assert version.exists
    assert version.content_string.strip() == "v2"


def test_replication_and_sentinel_are_healthy_after_the_upgrade():
    primary = next(
        h for h in hosts_in("postgresql") if psql(h, "SELECT pg_is_in_recovery()") == "f"
    )
    streaming = psql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    assert int(streaming) == len(hosts_in("postgresql")) - 1
    masters = set()
    for name in hosts_in("redis"):
        # The module takes the password as a no_log argument: it stays off the journal.
        report = host(name).ansible(
            "stackops.webstack.redis_topology_info",
            json.dumps(
                {
                    "server_port": 6379,
                    "sentinel_port": 26379,
                    "master_name": "webstack",
                    "login_user": "admin",
                    "login_password": secret("redis_admin_password"),
                    "login_host": address(name),
                }
            ),
            check=False,
        )
        assert report["sentinel"]["quorum_ok"], report["sentinel"]
        masters.add(report["sentinel"]["master_host"])
    assert len(masters) == 1


def test_prometheus_sees_every_target_up():
    answer = host("mon1").ansible(
        "ansible.builtin.uri",
        json.dumps(
            {
                "url": f"http://{address('mon1')}:9090/api/v1/targets?state=active",
                "url_username": "prometheus",
                "url_password": secret("prometheus_web_password"),
                "force_basic_auth": True,
                "return_content": True,
            }
        ),
        check=False,
    )
    targets = answer["json"]["data"]["activeTargets"]
    down = [
        (t["labels"].get("job"), t["labels"].get("instance"), t.get("lastError"))
        for t in targets
        if t["health"] != "up"
    ]
    assert down == []
    jobs = {t["labels"]["job"] for t in targets}
    assert {"node", "nginx", "postgres", "pgbouncer", "redis", "app"} <= jobs
    # One node exporter per host of the lab.
    assert sum(1 for t in targets if t["labels"]["job"] == "node") == len(hosts_in("all"))
