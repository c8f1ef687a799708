"""Verify the app tier (roles nodejs and nextjs) from outside the app hosts.

lb1 (group loadbalancers) is the client; app1 and app2 serve the example app
under PM2. side_effect.yml recorded what happened during a deployment under
load, two broken releases and the manual rollback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from labhosts import files_containing, host, hosts_in, journal_contains, wait_for

APPS = ["app1", "app2"]
BASE = "/srv/webstack"
LOAD_SUMMARY = "/var/tmp/app-load.json"  # noqa: S108 (written by side_effect.yml on lb1)
PM2 = f"runuser -u webstack -- env PM2_HOME={BASE}/.pm2 PATH=/usr/local/bin:/usr/bin:/bin pm2"


def record() -> dict:
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "app-side-effect.json"
    return json.loads(path.read_text())


def address(name: str) -> str:
    facts = host(name).ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def health_from(client: str, name: str, timeout: int = 5):
    """GET /api/health of app host `name` from host `client`: (curl rc, parsed JSON or None)."""
    result = host(client).run(
        f"curl -s --max-time {timeout} -w '\\n%{{http_code}}' http://{address(name)}:3000/api/health"
    )
    if result.rc != 0:
        return result.rc, None
    body, _, code = result.stdout.rpartition("\n")
    return int(code), json.loads(body) if body.startswith("{") else None


def processes(name: str) -> list[dict]:
    out = host(name).check_output(f"{PM2} jlist")
    return [p for p in json.loads(out[out.index("[") :]) if p["name"] == "webstack"]


def cpus(name: str) -> int:
    return int(host(name).check_output("nproc"))


def expected_release(name: str) -> str:
    return record()[name]["v2"]


def serving(name: str, release: str):
    code, body = health_from("lb1", name)
    return code == 200 and body and body["release"] == release


def test_inventory_shape():
    assert hosts_in("app") == APPS
    assert hosts_in("loadbalancers") == ["lb1"]


@pytest.mark.parametrize("name", APPS)
def test_node_is_new_enough_from_the_chosen_source(name):
    h = host(name)
    version = h.check_output("node --version").lstrip("v")
    assert tuple(int(x) for x in version.split(".")[:2]) >= (20, 9)
    node = h.check_output("readlink -f $(command -v node)")
    if name == "app2":  # Debian 12: the pinned official build
        assert node == "/opt/nodejs/node-v22.23.3/bin/node"
        assert h.check_output("npm --version").startswith("10.9.")
    else:  # Debian 13: Debian's own package
        assert node == "/usr/bin/node"
        assert h.package("nodejs").is_installed
    assert h.check_output("pm2 --version").splitlines()[-1] == "7.0.4"
    npmrc = h.file("/etc/npmrc").content_string
    assert "cache=/var/cache/lab-shared/npm" in npmrc
    assert "cafile=/etc/ssl/certs/ca-certificates.crt" in npmrc


@pytest.mark.parametrize("name", APPS)
def test_cluster_mode_with_one_worker_per_cpu(name):
    procs = processes(name)
    assert len(procs) == cpus(name)
    assert {p["pm2_env"]["exec_mode"] for p in procs} == {"cluster_mode"}
    assert {p["pm2_env"]["status"] for p in procs} == {"online"}


@pytest.mark.parametrize("name", APPS)
def test_every_worker_answers_the_load_balancer(name):
    pids = set()
    for _ in range(12):
        code, body = health_from("lb1", name)
        assert code == 200, body
        assert body["release"] == expected_release(name)
        assert body["app"] == "molecule-app"  # from the env file
        assert body["checks"]["postgresql"] == {"configured": False, "ok": None}
        pids.add(body["pid"])
    assert pids == {p["pid"] for p in processes(name)}


def test_port_3000_only_from_the_load_balancers():
    # app2 is not in `loadbalancers`: its packets are dropped (curl times out).
    for src, dst in (("app2", "app1"), ("app1", "app2")):
        assert health_from(src, dst, timeout=4)[0] == 28
        assert health_from("lb1", dst)[0] == 200


@pytest.mark.parametrize("name", APPS)
def test_layout_and_permissions(name):
    h = host(name)
    user = h.user("webstack")
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == BASE
    env = h.file(f"{BASE}/shared/app.env")
    assert (env.mode, env.user, env.group) == (0o640, "root", "webstack")
    assert "APP_NAME='molecule-app'" in env.content_string
    release = h.file(f"{BASE}/current")
    assert release.is_symlink
    assert release.linked_to == f"{BASE}/releases/{expected_release(name)}"
    assert h.file(f"{BASE}/releases/{expected_release(name)}/server.js").user == "root"
    # Nothing the app may change in its own code.
    assert h.run(f"runuser -u webstack -- touch {BASE}/current/server.js").rc != 0
    kept = h.check_output(f"ls {BASE}/releases").split()
    assert 2 <= len(kept) <= 3, kept


@pytest.mark.parametrize("name", APPS)
def test_secrets_stay_in_the_env_file(name):
    h = host(name)
    env = h.file(f"{BASE}/shared/app.env").content_string
    token = next(
        line.split("=", 1)[1].strip("'")
        for line in env.splitlines()
        if line.startswith("LAB_SECRET_TOKEN=")
    )
    assert len(token) >= 16
    # Not in the journal, PM2's saved process list, its logs, or the ecosystem file.
    assert not journal_contains(h, token)
    places = f"{BASE}/.pm2 {BASE}/ecosystem.config.json {BASE}/shared/logs"
    assert files_containing(h, [token], places) == []


@pytest.mark.parametrize("name", APPS)
def test_unit_and_log_rotation(name):
    h = host(name)
    assert h.service("pm2-webstack").is_enabled
    assert h.service("pm2-webstack").is_running
    assert h.run("logrotate -d /etc/logrotate.d/pm2-webstack").rc == 0
    assert h.file(f"{BASE}/shared/logs/out.log").exists


def test_no_failed_request_while_v2_was_deployed():
    load = json.loads(host("lb1").file(LOAD_SUMMARY).content_string)
    assert load["failures"] == 0, load["reasons"]
    assert load["requests"] >= 200, load
    seen = set(load["releases"])
    for name in APPS:
        rec = record()[name]
        assert {rec["v1"], rec["v2"]} <= seen, "the loop must span the switch"
        assert rec["v1"] != rec["v2"]


@pytest.mark.parametrize("name", APPS)
def test_failed_build_switches_nothing(name):
    rec = record()[name]
    assert rec["build_failed"] is True, "the deployment must fail on every host"
    assert "build of release" in rec["build_error"]
    assert "deliberately broken build" in rec["build_error"]
    assert rec["after_broken"] == rec["v2"]


@pytest.mark.parametrize("name", APPS)
def test_unhealthy_release_is_rolled_back(name):
    rec = record()[name]
    assert f"rolled back to {rec['v2']}" in rec["health_error"]
    assert rec["after_broken"] == rec["v2"]
    assert serving(name, rec["v2"])


@pytest.mark.parametrize("name", APPS)
def test_manual_rollback_goes_back_and_forth(name):
    rec = record()[name]
    assert rec["rolled_back"] == rec["v1"]
    assert rec["rolled_forward"] == rec["v2"]


def test_killed_worker_is_respawned():
    before = processes("app1")
    victim = before[0]["pid"]
    host("app1").check_output(f"kill -9 {victim}")

    def respawned():
        procs = processes("app1")
        pids = {p["pid"] for p in procs}
        online = [p for p in procs if p["pm2_env"]["status"] == "online"]
        return victim not in pids and len(online) == len(before)

    wait_for(respawned, timeout=30, what="a new worker in place of the killed one")
    assert serving("app1", expected_release("app1"))


def test_back_after_systemctl_restart():
    old = {p["pid"] for p in processes("app2")}
    host("app2").check_output("systemctl restart pm2-webstack")
    wait_for(lambda: serving("app2", expected_release("app2")), timeout=40, what="app2 serving")
    procs = processes("app2")
    assert len(procs) == cpus("app2")
    assert not old & {p["pid"] for p in procs}


def test_systemd_restarts_a_dead_pm2_daemon():
    h = host("app1")
    daemon = h.check_output(f"cat {BASE}/.pm2/pm2.pid")
    h.check_output(f"kill -9 {daemon}")
    wait_for(
        lambda: (
            h.run(f"cat {BASE}/.pm2/pm2.pid").stdout.strip() not in ("", daemon)
            and h.service("pm2-webstack").is_running
        ),
        timeout=30,
        what="a new PM2 daemon",
    )
    wait_for(lambda: serving("app1", expected_release("app1")), timeout=40, what="app1 serving")
    assert len(processes("app1")) == cpus("app1")
