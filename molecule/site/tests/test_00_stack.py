"""The whole stack after the converge, from outside: a request through the load
balancer reaches the app, which reads and writes PostgreSQL through PgBouncer
and Redis through Sentinel; replication, Sentinel, Prometheus and the first
backup are in place. The drills (test_10_* and later) start from here."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

from labhosts import duration_seconds, host, hosts_in, promtool_rule_tests, role_variable
from sitelab import (
    CLIENT,
    SITE,
    address,
    app_releases,
    postgresql_primary,
    prometheus,
    psql,
    secret,
    through_lb,
)

ROOT = Path(__file__).resolve().parents[3]
# sslyze runs in a virtualenv of its own (requirements-tls.txt, make setup).
TLS_PYTHON = ROOT / ".cache" / "tls-venv" / "bin" / "python"
TLS_CHECK = ROOT / "molecule" / "_shared" / "tlscheck.py"


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


def test_a_variable_of_the_inventory_reaches_every_worker_next_to_the_wiring():
    """inventories/lab sets webstack_app_env: {APP_ENVIRONMENT: lab}; the wired
    DATABASE_URL and REDIS_* stay (the checks of the same answers pass)."""
    seen = set()
    for name in hosts_in("app"):
        for _ in range(6):
            health = json.loads(
                host(CLIENT).check_output(
                    f"curl -s --max-time 10 http://{address(name)}:3000/api/health"
                )
            )
            assert health["environment"] == "lab", health
            assert health["checks"]["postgresql"]["ok"] is True, health
            assert health["checks"]["redis"]["ok"] is True, health
            seen.add((name, health["pid"]))
    # more than one worker per host answered (cluster mode)
    assert len(seen) > len(hosts_in("app")), seen


def test_the_apps_metrics_are_not_public_but_prometheus_reads_them():
    status, _ = through_lb("/api/metrics")
    assert status == 404
    direct = host(CLIENT).check_output(
        f"curl -sf --max-time 10 http://{address('app1')}:3000/api/metrics"
    )
    assert "# TYPE" in direct


# Run on an app host as the app user with the app's own environment file and
# its own node-postgres: one query with DATABASE_URL as the role wrote it,
# one with the same URL but the system's CA bundle instead of the internal CA.
# Prints "<case> ok" or "<case> <error>"; the password stays in app.env.
PG_TLS_CHECK = r"""
const pg = require("/srv/webstack/current/node_modules/pg");
const first = process.env.DATABASE_URL.replace(/@([^,/]+)(,[^/]*)?\//, "@$1/");
const cases = {
  ca: first,
  other_ca: first.replace(/sslrootcert=[^&]*/, "sslrootcert=/etc/ssl/certs/ca-certificates.crt"),
};
(async () => {
  for (const [name, url] of Object.entries(cases)) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
    try {
      await client.connect();
      await client.query("SELECT 1");
      console.log(`${name} ok`);
    } catch (err) {
      console.log(`${name} ${err.code || ""} ${err.message}`);
    }
    await client.end().catch(() => {});
  }
})();
"""


def test_the_app_checks_pgbouncers_certificate_against_the_internal_ca():
    """DATABASE_URL says verify-full with the CA bundle of role pki; the app's
    driver connects with it and refuses the same PgBouncer when told to trust
    another CA (so the check is real, not only encryption)."""
    app = host(hosts_in("app")[0])
    env = app.check_output("cat /srv/webstack/shared/app.env")
    # Without the credentials: an assertion message must not carry them.
    urls = [
        re.sub(r"//[^@]*@", "//...@", line)
        for line in env.splitlines()
        if line.startswith(("DATABASE_URL=", "DATABASE_READ_URL="))
    ]
    assert len(urls) == 2, urls
    for url in urls:
        assert "?sslmode=verify-full&sslrootcert=/etc/ssl/webstack/ca.crt&" in url, url
    assert app.file("/etc/ssl/webstack/ca.crt").mode == 0o644
    out = app.check_output(
        "cd /srv && runuser -u webstack -- node --env-file=/srv/webstack/shared/app.env -e %s",
        PG_TLS_CHECK,
    )
    results = dict(line.split(" ", 1) for line in out.splitlines())
    assert results["ca"] == "ok", out
    assert "self-signed certificate in certificate chain" in results["other_ca"], out


def test_a_write_through_the_lb_lands_in_postgresql_and_reads_back():
    prefix = f"site-e2e-{uuid.uuid4().hex[:8]}-"
    status, text = through_lb(
        "/api/writes", "POST", json.dumps({"id": f"{prefix}1", "payload": "e2e"})
    )
    assert status in (200, 201), text
    status, text = through_lb(f"/api/writes?prefix={prefix}")
    assert status == 200, text
    assert json.loads(text)["count"] == 1
    primary = postgresql_primary()
    assert psql(primary, f"SELECT payload FROM webstack_writes WHERE id = '{prefix}1'") == "e2e"


def test_the_page_counts_views_in_redis_through_sentinel():
    counts = []
    for _ in range(2):
        status, text = through_lb("/")
        assert status == 200
        marker = "Page views counted in Redis: "
        assert marker in text, text[:500]
        counts.append(int(text.split(marker, 1)[1].split("<", 1)[0]))
    assert counts[1] > counts[0]


def test_every_app_host_serves_the_linked_release():
    assert len(app_releases()) == 1


# Connects to PM2's RPC socket as the calling user; prints the error code.
PM2_CONNECT = (
    'node -e \'require("net").connect("/srv/webstack/.pm2/rpc.sock")'
    '.on("connect", () => { console.log("connected"); process.exit(0); })'
    '.on("error", (e) => { console.log(e.code); process.exit(1); })\''
)


def test_only_the_app_reads_its_secrets_and_the_build_user_not_even_pm2():
    """app.env is root's and readable by the app's group, which holds nobody
    else (log readers get the logs group). npm ci runs every dependency's
    install scripts as the build user: it can read neither app.env nor drive
    PM2, which the app can."""
    for name in hosts_in("app"):
        h = host(name)
        env = h.file("/srv/webstack/shared/app.env")
        assert (env.mode, env.user, env.group) == (0o640, "root", "webstack"), name
        members = h.check_output("getent group webstack").split(":")[3]
        assert members in ("", "webstack"), (name, members)
        logs = h.file("/srv/webstack/shared/logs")
        assert (logs.mode, logs.group) == (0o2750, "webstack-logs"), name
        assert h.file("/srv/webstack/shared/logs/out.log").group == "webstack-logs", name
    build = host("app1")  # the build host: the first host of the app play
    assert build.user("webstack-build").groups == ["webstack-build"]
    as_builder = "cd / && runuser -u webstack-build -- "
    read = build.run(as_builder + "cat /srv/webstack/shared/app.env")
    assert read.rc != 0
    assert "Permission denied" in read.stderr, read.stderr
    denied = build.run(as_builder + PM2_CONNECT)
    assert denied.stdout.strip() == "EACCES", (denied.stdout, denied.stderr)
    app = build.run("cd / && runuser -u webstack -- " + PM2_CONNECT)
    assert app.stdout.strip() == "connected", (app.stdout, app.stderr)
    # The build ran as that user: its npm cache holds only its files.
    # inventories/lab: nextjs_npm_cache_dir
    cache = "/var/cache/lab-shared/npm-build-webstack-build"
    assert build.check_output(f"find {cache} -mindepth 1 -maxdepth 2 | head -1"), cache
    foreign = build.check_output(f"find {cache} -mindepth 1 ! -user webstack-build | head -5")
    assert foreign == "", foreign
    for name in hosts_in("app"):
        # Nothing setuid/setgid or writable by group or others in the release.
        loose = host(name).check_output("find /srv/webstack/current/ ! -type l -perm /6022")
        assert loose == "", (name, loose[:500])


def redis_report(name: str, master_name: str = "webstack") -> dict:
    # The module takes the password as a no_log argument: it stays off the journal.
    return host(name).ansible(
        "stackops.webstack.redis_topology_info",
        json.dumps(
            {
                "server_port": 6379,
                "sentinel_port": 26379,
                "master_name": master_name,
                "login_user": "admin",
                "login_password": secret("redis_admin_password"),
                "login_host": address(name),
            }
        ),
        check=False,
    )


def test_replication_and_sentinel_are_healthy():
    primary = postgresql_primary()
    streaming = psql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    assert int(streaming) == len(hosts_in("postgresql")) - 1
    masters = set()
    for name in hosts_in("redis"):
        report = redis_report(name)
        assert report["sentinel"]["quorum_ok"], report["sentinel"]
        masters.add(report["sentinel"]["master_host"])
    assert len(masters) == 1


def test_the_valkey_flavor_serves_with_its_sentinel():
    # s3 runs the cache role with redis_flavor: valkey (Debian's valkey-server),
    # a master of its own that its Sentinel names "kv".
    s3 = host("s3")
    assert s3.service("valkey-server").is_running
    assert s3.service("valkey-sentinel").is_running
    assert not s3.package("redis-server").is_installed
    report = redis_report("s3", master_name="kv")
    assert report["server"]["ready"], report["server"]
    assert report["server"]["role"] == "master", report["server"]
    assert report["sentinel"]["quorum_ok"], report["sentinel"]
    assert report["sentinel"]["master_host"] == address("s3")


def test_prometheus_sees_every_target_up():
    targets = prometheus("/api/v1/targets?state=active")["data"]["activeTargets"]
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


def test_the_blackbox_probes_reach_the_site_through_every_lb_and_every_app_host():
    """probe_site asks each load balancer for the site over HTTPS (by name),
    probe_app each app host's health URL; both as a client would."""
    answer = prometheus("/api/v1/query?query=" + "probe_success{job=~%22probe_.*%22}")
    seen = {
        (r["metric"]["job"], r["metric"]["instance"]): r["value"][1]
        for r in answer["data"]["result"]
    }
    expected = {("probe_site", name) for name in hosts_in("loadbalancers")}
    expected |= {("probe_app", name) for name in hosts_in("app")}
    assert set(seen) == expected, seen
    assert set(seen.values()) == {"1"}, seen
    # The site's TLS was really spoken: the certificate's end is known.
    expiry = prometheus("/api/v1/query?query=probe_ssl_earliest_cert_expiry")["data"]["result"]
    assert {r["metric"]["instance"] for r in expiry} == set(hosts_in("loadbalancers")), expiry


def test_the_alert_rules_pass_their_promtool_unit_tests(tmp_path):
    """promtool test rules on the Prometheus host, with the rules rendered
    from the role's defaults."""
    result = promtool_rule_tests("mon1", tmp_path)
    assert result.rc == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_fail2ban_runs_with_the_roles_ban_time():
    # Debian's package starts fail2ban (bantime 10m) before the role writes its jail file.
    running = {
        name: int(host(name).check_output("fail2ban-client get sshd bantime"))
        for name in hosts_in("all")
    }
    wanted = {
        name: duration_seconds(role_variable(name, "common", "common_fail2ban_bantime"))
        for name in running
    }
    assert running == wanted


def test_tls_offers_the_configured_key_exchange_groups_only():
    s_client = f"openssl s_client -connect {address('lb1')}:443 -servername {SITE} -tls1_3"
    offered = {
        group: host(CLIENT).run(f"echo | {s_client} -groups {group}").rc == 0
        for group in ("X25519MLKEM768", "X25519", "secp521r1")
    }
    # lb1 runs Debian 13: the ML-KEM hybrid first, then Mozilla's list.
    assert offered == {"X25519MLKEM768": True, "X25519": True, "secp521r1": False}


def test_the_load_balancer_meets_mozillas_intermediate_profile():
    """sslyze's check against Mozilla's intermediate configuration (protocols,
    cipher suites, curves, key size, certificate lifespan, the known attacks):
    all pass except the trust of the lab's self-signed certificate."""
    run = subprocess.run(
        [str(TLS_PYTHON), str(TLS_CHECK), SITE, "443", address("lb1")],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    issues = json.loads(run.stdout)
    assert set(issues) == {"certificate_path_validation"}, issues
