"""Verify the monitoring tier from outside: targets, auth, firewall, alerts end to end.

Prometheus' API is queried from mon1 (only the monitoring group may reach it)
with the password the secret lookup generated for this scenario.
Grafana, Loki and Alloy run only when the scenario's one switch
webstack_vendor_packages_available is true; otherwise the tests that need
the running services are skipped with a reason that names what was not run,
and the tests that remain check their rendered files with the collection's
checkers and that nothing was installed behind the switch's back.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
import time
import urllib.parse
from functools import cache
from pathlib import Path

import pytest
import yaml
from labhosts import host, hosts_in, promtool_rule_tests, tcp_probe, wait_for

ROOT = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).resolve().parents[1]
MON = "mon1"
REDIS = "redis1"
APP = "app1"
# Jobs whose targets are services from the Grafana Labs repository.
VENDOR_JOBS = {"alloy", "loki", "grafana"}
VENDOR_SERVICES = {"grafana": "grafana-server", "loki": "loki", "alloy": "alloy"}
SCRAPE_INTERVAL = 5  # prometheus_scrape_interval of the scenario
REDIS_DOWN_FOR = 15  # prometheus_alert_settings.redis_down_for of the scenario


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


checks = _module("monitoring_config", ROOT / "plugins" / "module_utils" / "monitoring_config.py")


def secret(name: str) -> str:
    return (
        (Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / ".secrets" / name).read_text().strip()
    )


@cache
def vendor_available() -> bool:
    value = host(MON).ansible.get_variables().get("webstack_vendor_packages_available", False)
    return str(value).lower() == "true"


def needs_vendor(what: str):
    """Skip unless the vendor packages are installed; the reason says what did not run."""
    return pytest.mark.skipif(
        "not vendor_available()",
        reason=f"NOT RUN: {what} (webstack_vendor_packages_available is false: the Grafana "
        "Labs packages could not be installed, their services do not run)",
    )


@cache
def address(name: str) -> str:
    facts = host(name).ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def curl(src: str, url: str, user: str | None = None, password: str | None = None):
    auth = f"-u {shlex.quote(user + ':' + password)} " if user else ""
    return host(src).run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {auth}{url}")


def prom(path: str, **params) -> dict:
    """GET from Prometheus' API on mon1, as the stack's basic auth user."""
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    url = shlex.quote(f"http://{address(MON)}:9090{path}{query}")
    credentials = shlex.quote("prometheus:" + secret("prometheus_web_password"))
    out = host(MON).check_output(f"curl -sf --max-time 5 -u {credentials} {url}")
    return json.loads(out)["data"]


def alerts(name: str) -> list[dict]:
    return [a for a in prom("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]


def webhook_records() -> list[dict]:
    out = host(MON).run("cat /var/lib/lab-webhook/alerts.jsonl 2>/dev/null").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def delivered(name: str, status: str, since: float) -> list[dict]:
    found = []
    for record in webhook_records():
        if record["received"] < since:
            continue
        for alert in record["body"]["alerts"]:
            if alert["labels"]["alertname"] == name and alert["status"] == status:
                found.append(alert)
    return found


def expected_targets() -> set[tuple[str, str]]:
    """(job, instance) of every target the scenario's inventory implies."""
    defaults = yaml.safe_load((ROOT / "roles/prometheus/defaults/main.yml").read_text())
    expected = {("prometheus", h) for h in hosts_in("monitoring")}
    expected |= {("alertmanager", h) for h in hosts_in("monitoring")}
    for job in defaults["prometheus_scrape_jobs"]:
        if job["name"] in VENDOR_JOBS and not vendor_available():
            continue
        expected |= {(job["name"], h) for h in hosts_in(job["group"])}
    return expected


# ------------------------------------------------------------------ targets


def test_every_expected_target_is_up():
    expected = expected_targets()
    # The count follows from the inventory: a node exporter (and, with the vendor
    # packages, an Alloy) on every host, Prometheus and Alertmanager (and Loki
    # and Grafana) on each monitoring host, the redis and app jobs on theirs.
    hosts, monitoring = len(hosts_in("all")), len(hosts_in("monitoring"))
    count = hosts + 2 * monitoring + len(hosts_in("redis")) + len(hosts_in("app"))
    if vendor_available():
        count += hosts + 2 * monitoring
    assert len(expected) == count, sorted(expected)

    def all_up():
        targets = prom("/api/v1/targets", state="active")["activeTargets"]
        seen = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in targets}
        return seen if set(seen) == expected and set(seen.values()) == {"up"} else None

    wait_for(all_up, timeout=60, interval=2, what=f"all of {sorted(expected)} up")


def test_jobs_of_empty_groups_have_no_targets():
    for job in ("nginx", "postgres", "pgbouncer"):
        content = host(MON).file(f"/etc/prometheus/file_sd/{job}.yml").content_string
        assert yaml.safe_load(content) == [], job
    configured = {
        c["job_name"]
        for c in yaml.safe_load(host(MON).file("/etc/prometheus/prometheus.yml").content_string)[
            "scrape_configs"
        ]
    }
    assert {"nginx", "postgres", "pgbouncer", "redis", "app", "node"} <= configured


def test_targets_are_named_after_the_inventory():
    content = yaml.safe_load(host(MON).file("/etc/prometheus/file_sd/node.yml").content_string)
    assert {entry["labels"]["instance"] for entry in content} == set(hosts_in("all"))
    assert {entry["targets"][0] for entry in content} == {
        f"{address(h)}:9100" for h in hosts_in("all")
    }


# ------------------------------------------------------- access and firewall


@pytest.mark.parametrize(
    ("port", "user", "secret_name"),
    [
        (9090, "prometheus", "prometheus_web_password"),
        (9093, "alertmanager", "alertmanager_web_password"),
    ],
)
def test_web_apis_require_basic_auth(port, user, secret_name):
    url = (
        f"http://{address(MON)}:{port}/api/v1/status/buildinfo"
        if port == 9090
        else f"http://{address(MON)}:{port}/api/v2/status"
    )
    assert curl(MON, url).stdout == "401"
    assert curl(MON, url, user, "wrong-password").stdout == "401"
    assert curl(MON, url, user, secret(secret_name)).stdout == "200"


def test_services_listen_on_the_private_address_only():
    listening = host(MON).check_output("ss -ltnH")
    for port in (9090, 9093):
        assert f"{address(MON)}:{port} " in listening, port
        assert f"0.0.0.0:{port} " not in listening, port
        assert f"*:{port} " not in listening, port
    assert f"{address(REDIS)}:9100 " in host(REDIS).check_output("ss -ltnH")


def test_exporters_answer_the_monitoring_hosts_only():
    url = f"http://{address(REDIS)}:9100/metrics"
    assert (
        host(MON).run(f"curl -sf --max-time 5 {url} | grep -q '^node_exporter_build_info'").rc == 0
    )
    refused = host(APP).run(f"curl -sf -o /dev/null --max-time 5 {url}")
    assert refused.rc == 28, "app1 is not in group monitoring: the firewall must drop it"


def test_prometheus_and_alertmanager_answer_the_monitoring_hosts_only():
    for port in (9090, 9093):
        assert tcp_probe(host(APP), address(MON), port).rc != 0, port
        assert tcp_probe(host(REDIS), address(MON), port).rc != 0, port


# -------------------------------------------------------- rules and configs


def test_configs_pass_the_vendor_checkers_on_the_host():
    mon = host(MON)
    assert mon.run("promtool check config /etc/prometheus/prometheus.yml").rc == 0
    assert mon.run("promtool check web-config /etc/prometheus/web.yml").rc == 0
    assert mon.run("promtool check rules /etc/prometheus/rules/webstack.rules.yml").rc == 0
    assert mon.run("amtool check-config /etc/prometheus/alertmanager.yml").rc == 0
    assert mon.run("promtool check web-config /etc/prometheus/alertmanager-web.yml").rc == 0


def test_secrets_stay_off_disk_in_clear_and_private():
    web = host(MON).file("/etc/prometheus/web.yml")
    assert secret("prometheus_web_password") not in web.content_string
    assert "$2b$" in web.content_string
    for path in (
        "/etc/prometheus/secrets/prometheus_password",
        "/etc/prometheus/alertmanager.yml",
        "/etc/grafana/grafana.ini",
    ):
        f = host(MON).file(path)
        assert f.mode == 0o640, path
        assert f.user == "root", path


def test_rule_unit_tests_pass(tmp_path):
    """promtool test rules, with the rules rendered from the role's production defaults."""
    result = promtool_rule_tests(MON, tmp_path)
    assert result.rc == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_rules_are_loaded():
    deployed = yaml.safe_load(
        host(MON).file("/etc/prometheus/rules/webstack.rules.yml").content_string
    )
    groups = prom("/api/v1/rules")["groups"]
    assert {g["name"] for g in groups} == {g["name"] for g in deployed["groups"]}
    assert sum(len(g["rules"]) for g in groups) == sum(len(g["rules"]) for g in deployed["groups"])
    redis_down = next(r for g in groups for r in g["rules"] if r.get("name") == "RedisDown")
    assert redis_down["duration"] == REDIS_DOWN_FOR


# ----------------------------------------------------------- alerts end to end


def test_stopping_redis_fires_its_alert_and_alertmanager_delivers_it():
    redis = host(REDIS)
    assert alerts("RedisDown") == [], "RedisDown must not be active before the test"
    started = time.time()
    redis.check_output("systemctl stop redis-server")
    try:
        # Pending within a scrape plus an evaluation, firing `for` later.
        budget = REDIS_DOWN_FOR + 2 * SCRAPE_INTERVAL
        firing = wait_for(
            lambda: [a for a in alerts("RedisDown") if a["state"] == "firing"],
            timeout=budget + 5,
            interval=1,
            what="RedisDown firing",
        )
        fired_after = time.time() - started
        alert = firing[0]
        assert alert["labels"]["instance"] == REDIS
        assert alert["labels"]["severity"] == "critical"
        active_at = alert["activeAt"]
        print(
            f"RedisDown firing after {fired_after:.1f} s (activeAt {active_at}, budget {budget} s)"
        )
        assert fired_after <= budget + 2, f"fired after {fired_after:.1f} s, budget {budget} s"

        sent = wait_for(
            lambda: delivered("RedisDown", "firing", started),
            timeout=20,
            what="RedisDown delivered to the webhook receiver",
        )
        assert sent[0]["labels"]["instance"] == REDIS
        assert sent[0]["annotations"]["summary"] == f"Redis on {REDIS} is down"
    finally:
        redis.check_output("systemctl start redis-server")
    wait_for(
        lambda: delivered("RedisDown", "resolved", started),
        timeout=60,
        what="RedisDown resolved and delivered",
    )


def test_a_stale_backup_metric_raises_backuptooold():
    """The contract with the backup jobs: a textfile gauge that the alert reads."""
    redis = host(REDIS)
    old = int(time.time()) - 7200
    metrics = (
        "# TYPE webstack_backup_last_success_timestamp_seconds gauge\\n"
        f'webstack_backup_last_success_timestamp_seconds{{kind=\\"lab\\"}} {old}\\n'
        "# TYPE webstack_backup_max_age_seconds gauge\\n"
        'webstack_backup_max_age_seconds{kind=\\"lab\\"} 3600\\n'
    )
    directory = "/var/lib/prometheus/node-exporter"
    target = f"{directory}/webstack_backup_lab.prom"
    redis.check_output(
        f'printf "{metrics}" > {directory}/.lab.tmp && mv {directory}/.lab.tmp {target}'
    )
    try:
        found = wait_for(
            lambda: [a for a in alerts("BackupTooOld") if a["labels"].get("kind") == "lab"],
            timeout=30,
            what="BackupTooOld for kind=lab",
        )
        assert found[0]["labels"]["instance"] == REDIS
        assert found[0]["state"] in ("pending", "firing")
    finally:
        redis.run(f"rm -f {target}")


# -------------------------------------- Grafana, Loki and Alloy: files and checks


@pytest.mark.parametrize("name", ["mon1", "redis1", "app1"])
def test_alloy_config_passes_the_parser_and_ships_the_hosts_logs(name):
    text = host(name).file("/etc/alloy/config.alloy").content_string
    assert checks.alloy_config_errors(text) == []
    assert f'host = "{name}"' in text
    assert f"http://{address(MON)}:3100/loki/api/v1/push" in text
    assert 'loki.source.journal "journal"' in text
    # Files only on the hosts of their group; Redis logs to the journal.
    assert ("/srv/*/shared/logs/*.log" in text) == (name == "app1"), name
    assert "/var/log/redis" not in text
    assert (
        f"--server.http.listen-addr={address(name)}:12345"
        in host(name).file("/etc/default/alloy").content_string
    )


def test_loki_config_passes_the_checker():
    text = host(MON).file("/etc/loki/config.yml").content_string
    assert checks.loki_config_errors(text) == []
    config = yaml.safe_load(text)
    assert config["limits_config"]["retention_period"] == "744h"
    assert config["compactor"]["retention_enabled"] is True
    assert config["server"]["http_listen_address"] == address(MON)


def test_grafana_files_pass_the_checkers():
    mon = host(MON)
    ini = mon.file("/etc/grafana/grafana.ini").content_string
    assert checks.grafana_ini_errors(ini) == []
    assert "[auth.anonymous]\nenabled = false" in ini
    has_password = f'admin_password = """{secret("grafana_admin_password")}"""' in ini
    assert has_password, "grafana.ini does not carry the admin password from the secret lookup"
    assert mon.file("/etc/grafana/grafana.ini").group == "grafana"
    datasources = mon.file("/etc/grafana/provisioning/datasources/webstack.yaml").content_string
    assert checks.grafana_datasource_errors(datasources) == []
    uids = checks.grafana_datasource_uids(datasources)
    assert sorted(uids) == ["webstack-loki", "webstack-prometheus"]
    assert f"http://{address(MON)}:9090" in datasources
    boards = mon.check_output("ls /etc/grafana/dashboards/webstack").split()
    assert sorted(boards) == sorted(
        p.name for p in (ROOT / "roles/grafana/files/dashboards").glob("*.json")
    )
    for board in boards:
        text = mon.file(f"/etc/grafana/dashboards/webstack/{board}").content_string
        assert checks.grafana_dashboard_errors(text, uids) == [], board


def test_nothing_is_installed_behind_the_switch():
    """With the switch off, no vendor package or service exists (nothing half-installed)."""
    if vendor_available():
        pytest.skip(
            "webstack_vendor_packages_available is true: the packages are meant to be there"
        )
    for name in ("mon1", "redis1", "app1"):
        for package in ("grafana", "loki", "alloy"):
            assert not host(name).package(package).is_installed, (name, package)
        assert host(name).run("test -e /etc/apt/sources.list.d/grafana.sources").rc != 0


# --------------------------------- the same, running (needs the vendor packages)


@needs_vendor("alloy running on every host, grafana-server and loki running on mon1")
def test_vendor_services_run():
    for name in hosts_in("all"):
        assert host(name).service("alloy").is_running, name
    for service in ("grafana-server", "loki"):
        assert host(MON).service(service).is_running, service


@needs_vendor("Grafana's API: anonymous request refused, admin login, 5 dashboards, 2 data sources")
def test_grafana_refuses_anonymous_users_and_serves_the_dashboards():
    base = f"http://{address(MON)}:3000"
    assert curl(MON, f"{base}/api/search").stdout == "401"
    password = secret("grafana_admin_password")
    out = host(MON).check_output(
        f"curl -sf -u {shlex.quote('admin:' + password)} {base}/api/search?type=dash-db"
    )
    uids = {board["uid"] for board in json.loads(out)}
    assert {
        "webstack-hosts",
        "webstack-nginx",
        "webstack-postgresql",
        "webstack-redis",
        "webstack-app",
    } <= uids
    out = host(MON).check_output(
        f"curl -sf -u {shlex.quote('admin:' + password)} {base}/api/datasources"
    )
    assert {d["uid"] for d in json.loads(out)} >= {"webstack-prometheus", "webstack-loki"}


@needs_vendor("logs shipped by Alloy from every host arriving in Loki")
def test_loki_receives_the_journal_of_every_host():
    def hosts_with_logs():
        query = urllib.parse.urlencode({"query": '{job="journal"}', "limit": 1000})
        out = host(MON).check_output(
            f"curl -sf 'http://{address(MON)}:3100/loki/api/v1/query_range?{query}'"
        )
        return {s["stream"].get("host") for s in json.loads(out)["data"]["result"]} >= set(
            hosts_in("all")
        )

    wait_for(hosts_with_logs, timeout=90, interval=3, what="journal lines of every host in Loki")
