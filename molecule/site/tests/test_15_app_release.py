"""A release that crashes at start never reaches a client.

site.yml deploys the app host by host: the first host (the canary) leaves the
load balancers' pool, switches, fails its health gate, goes back to the
release it had and rejoins the pool; the play stops there, so no other app
host ever receives the bad release. Meanwhile a bounded load runs through the
load balancer and no request of it fails. Then a good release goes out the
same way under load, and back to the inventory's release. A pre-deploy
command (migrations) that fails stops a deploy before any host switches; one
that works runs once, on the canary, with the app's environment, before the
canary switches.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from drill import extra_vars, load, playbook, record
from labhosts import host, hosts_in, secret
from sitelab import CLIENT, ECOSYSTEM, SITE, app_releases, linked_release, wait_until_healthy

RELEASES = "/srv/webstack/releases"
UPSTREAM = "/etc/nginx/webstack/upstream.conf"
# Shaped like standalone output (server.js at the top), exits before it listens.
CRASHING_SERVER = """\
console.error("deliberately crashing at start");
process.exit(1);
"""


@pytest.fixture(scope="module", autouse=True)
def healthy_lab():
    wait_until_healthy(what="before the bad release")
    yield
    wait_until_healthy(what="after the bad release")


def artifact(
    tmp_path_factory, name: str, files: dict[str, str], modes: dict[str, int] | None = None
) -> Path:
    """A release artifact (tar.gz) holding ``files`` (path in the release: text),
    with the file modes ``modes`` (path: mode) where given."""
    work = tmp_path_factory.mktemp(name)
    tree = work / "tree"
    for path, text in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text)
    for path, mode in (modes or {}).items():
        (tree / path).chmod(mode)
    packed = work / f"{name}.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        for top in sorted(tree.iterdir()):
            tar.add(top, arcname=top.name)
    return packed


def deploy_app(source: Path, check: bool = True, **settings):
    """site.yml --tags app with the artifact ``source`` and more role settings."""
    values = {"nextjs_source_type": "artifact", "nextjs_source_path": str(source), **settings}
    return playbook("site.yml", "--tags", "app", *extra_vars(values), check=check)


# An artifact built elsewhere may carry setuid files and files anyone may
# write (a careless pack); no app host keeps those bits.
LOOSE_MODES = {"bin/helper": 0o4755, "bin/shared-state": 0o666, "bin": 0o2777}
STRIPPED_MODES = {"bin/helper": 0o755, "bin/shared-state": 0o644, "bin": 0o755}


@pytest.fixture(scope="module")
def crashing_artifact(tmp_path_factory) -> Path:
    files = {"server.js": CRASHING_SERVER, "bin/helper": "#!/bin/sh\n", "bin/shared-state": ""}
    return artifact(tmp_path_factory, "crashing-release", files, LOOSE_MODES)


# Shaped like standalone output as well; healthy in its first worker only: the
# others answer for another release, as a worker whose environment went stale.
HALF_STALE_SERVER = """\
const http = require("http");
const first = (process.env.NODE_APP_INSTANCE || "0") === "0";
const release = first ? process.env.RELEASE_ID : "stale-worker";
http.createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ status: "ok", release }));
}).listen(Number(process.env.PORT), process.env.HOSTNAME);
"""


@pytest.fixture(scope="module")
def half_stale_artifact(tmp_path_factory) -> Path:
    return artifact(tmp_path_factory, "half-stale-release", {"server.js": HALF_STALE_SERVER})


def holding(release: str) -> list[str]:
    return [name for name in hosts_in("app") if host(name).file(f"{RELEASES}/{release}").exists]


def test_a_release_that_crashes_at_start_is_rolled_back_on_the_canary_only(crashing_artifact):
    (good,) = app_releases()
    started = time.monotonic()
    with load(host(CLIENT), SITE, rate=20, max_seconds=300) as summary:
        bad = deploy_app(
            crashing_artifact,
            check=False,
            nextjs_health_timeout=20,
        )
    assert bad.returncode != 0, bad.output[-3000:]
    found = re.search(r"Release (\w+) failed .*?rolled back to\s+(\w+)", bad.output, re.S)
    assert found, bad.output[-3000:]
    crashed, back_to = found.groups()
    assert back_to == good
    assert crashed != good

    # Not one request through the load balancer failed.
    assert summary["failed"] == 0, summary["failures"][:5]
    assert summary["completed"] > 100, summary

    # Only the canary ever held the bad release; every host serves the good one
    # and is back in the pool.
    assert len(holding(crashed)) == 1, holding(crashed)
    (canary,) = holding(crashed)
    modes = {path: host(canary).file(f"{RELEASES}/{crashed}/{path}").mode for path in LOOSE_MODES}
    assert modes == STRIPPED_MODES, modes
    assert app_releases() == {good}
    assert " down;" not in host("lb1").file(UPSTREAM).content_string
    record(
        "bad release: canary rolled back, others untouched",
        seconds=round(time.monotonic() - started, 1),
        deploy_seconds=round(bad.seconds, 1),
        requests=summary["completed"],
        failed=summary["failed"],
    )


def test_a_release_healthy_in_one_worker_only_fails_its_gate(half_stale_artifact):
    (good,) = app_releases()
    ecosystem = json.loads(host("app1").file(ECOSYSTEM).content_string)
    workers = ecosystem["apps"][0]["instances"]
    assert workers >= 2, f"the drill needs two PM2 workers on app1, not {workers}"
    bad = deploy_app(
        half_stale_artifact,
        check=False,
        nextjs_health_timeout=20,
    )
    assert bad.returncode != 0, bad.output[-3000:]
    said = " ".join(bad.output.split())
    found = re.search(r"Release (\w+) failed \(.*?not every worker is healthy on release \1", said)
    assert found, said[-3000:]
    (half,) = found.groups()
    rest = said[found.end() :]
    listed = re.match(
        r"; the answers \(status release\) were: ([^)]*)\); rolled back to (\w+)",
        rest,
    )
    assert listed, rest[:1000]
    answers = listed.group(1).split(", ")
    # Each worker twice, in turn: half of them from the other release.
    assert len(answers) == 2 * workers, answers
    assert sorted(set(answers)) == sorted({f"200 {half}", "200 stale-worker"}), answers
    assert listed.group(2) == good
    # The canary went back; nobody else ever held the release.
    assert holding(half) == ["app1"], holding(half)
    assert app_releases() == {good}
    assert " down;" not in host("lb1").file(UPSTREAM).content_string
    record(
        "release healthy in one worker only: canary rolled back",
        deploy_seconds=round(bad.seconds, 1),
    )


# Not written for this collection: no standalone output, no health route, no
# release id in its answers (examples/stock-nextjs-app/README.md).
STOCK_APP = Path(__file__).resolve().parents[3] / "examples" / "stock-nextjs-app"
NEXT_BIN = "/node_modules/next/dist/bin/next"


def test_a_stock_create_next_app_project_runs_with_next_start_and_reloads_without_a_failure():
    """Built by the role from the source (auto: no standalone output, so next
    start), gated on / and on PM2, reloaded in place under load, then back to
    the inventory's standalone release, which starts with server.js again."""
    (good,) = app_releases()
    stock = {
        "nextjs_source_type": "directory",
        "nextjs_source_path": str(STOCK_APP),
        # As a stock app is checked: a 200 on / and PM2's RELEASE_ID per worker.
        "nextjs_health_path": "/",
        "nextjs_health_check_release": "false",  # as -e writes it
    }
    with load(host(CLIENT), SITE, rate=20, max_seconds=540, writes=False, read_path="/") as summary:
        deploy = playbook("site.yml", "--tags", "app", *extra_vars(stock))
        # The stock app has no /api/health to check the links against.
        (started,) = {linked_release(name) for name in hosts_in("app")}
        marker = host("app1").file(f"{RELEASES}/{started}/.webstack-release").content_string
        ecosystem = json.loads(host("app1").file(ECOSYSTEM).content_string)["apps"][0]
        workers = pm2_releases("app1")
        # A setting that changes nothing but the environment: PM2 reloads the
        # next start workers in place, in the pool, one by one.
        reload = playbook(
            "site.yml",
            "--tags",
            "app",
            *extra_vars({**stock, "nextjs_pm2_env": {"STOCK_DRILL": "reloaded"}}),
        )
        reloaded = pm2_env("app1", "STOCK_DRILL")
        # Back to the inventory's standalone release, started as it was.
        back = playbook("site.yml", "--tags", "app")
    assert started != good
    assert "start=next-start" in marker.splitlines(), marker
    assert ecosystem["script"].endswith(NEXT_BIN), ecosystem["script"]
    assert ecosystem["exec_mode"] == "cluster", ecosystem
    assert workers == [started] * ecosystem["instances"], workers
    said = " ".join(deploy.output.split())
    gate = said.find(f"Every worker of PM2 is online on release {started}]")
    assert gate > 0, said[-3000:]
    assert "ok: [app1]" in said[gate : gate + 300], said[gate : gate + 300]
    said = " ".join(reload.output.split())
    step = said.find("Reload the app (new release, settings or environment)]")
    assert step > 0, said[-3000:]
    assert "changed: [app1]" in said[step : step + 300], said[step : step + 300]
    assert reloaded == ["reloaded"] * ecosystem["instances"], reloaded
    assert app_releases() == {good}
    back_script = json.loads(host("app1").file(ECOSYSTEM).content_string)["apps"][0]["script"]
    assert back_script.endswith("/server.js"), back_script
    assert summary["failed"] == 0, summary["failures"][:5]
    # The load ran through all three playbooks, not out of time before.
    assert summary["stopped_by"] == "stop_file", summary["stopped_by"]
    assert summary["completed"] > 100, summary
    assert " down;" not in host("lb1").file(UPSTREAM).content_string
    record(
        "stock create-next-app: next start, reload, back to server.js",
        deploy_seconds=round(deploy.seconds, 1),
        reload_seconds=round(reload.seconds, 1),
        back_seconds=round(back.seconds, 1),
        requests=summary["completed"],
        failed=summary["failed"],
    )


PM2 = "runuser -u webstack -- env HOME=/srv/webstack PM2_HOME=/srv/webstack/.pm2 /usr/local/bin/pm2"


def pm2_env(name: str, variable: str) -> list[str]:
    """``variable`` of each PM2 worker of the app on host ``name``, by pm_id
    (the environment PM2 holds carries secrets: only this variable is kept)."""
    procs = json.loads(host(name).check_output(f"{PM2} jlist").strip().splitlines()[-1])
    mine = sorted((p for p in procs if p["name"] == "webstack"), key=lambda p: p["pm_id"])
    return [p["pm2_env"].get(variable, "") for p in mine]


def pm2_releases(name: str) -> list[str]:
    return pm2_env(name, "RELEASE_ID")


def test_a_worker_left_on_another_release_is_mended_by_the_next_converge():
    """A worker restarted by hand with another environment: nothing answers
    wrong yet, but the next converge sees it in PM2, reloads that host through
    the health gate and changes nothing elsewhere."""
    (good,) = app_releases()
    before = pm2_releases("app1")
    assert set(before) == {good}, before
    assert len(before) >= 2, before
    procs = json.loads(host("app1").check_output(f"{PM2} jlist").strip().splitlines()[-1])
    second = sorted(p["pm_id"] for p in procs if p["name"] == "webstack")[1]
    host("app1").check_output(
        f"cd /srv/webstack && RELEASE_ID=stale-by-hand {PM2} restart {second} --update-env"
    )
    assert pm2_releases("app1") == [good] * (len(before) - 1) + ["stale-by-hand"]
    run = playbook("site.yml", "--tags", "app")
    said = " ".join(run.output.split())
    reload = said.find("Reload the app (new release, settings or environment)]")
    assert reload > 0, said[-3000:]
    assert "changed: [app1]" in said[reload : reload + 300], said[reload : reload + 300]
    assert re.search(r"app2 *: ok=\d+ +changed=0 ", run.output), run.output[-1500:]
    assert pm2_releases("app1") == [good] * len(before)
    assert app_releases() == {good}
    record("worker on another release mended by a converge", seconds=round(run.seconds, 1))


def built_artifact(release: str) -> Path:
    """The cached artifact of a release the lab built (inventories/lab: nextjs_artifact_dir)."""
    cache = Path(os.environ.get("STACKOPS_LAB_CACHE") or "/var/cache/stackops-lab")
    artifact = cache / "nextjs-artifacts" / f"webstack-{release}.tar.gz"
    assert artifact.exists(), artifact
    return artifact


# What the pre-deploy command saw, appended to a file of the canary's shared
# directory (the app user can write there): an inventory value of the app's
# environment, the release ids it was given, where it ran, and which release
# the host served at that moment.
PREDEPLOY_LOG = "/srv/webstack/shared/logs/predeploy-drill.log"
PREDEPLOY = (
    'printf "%s %s %s %s %s\\n" "$APP_ENVIRONMENT" "$WEBSTACK_RELEASE_ID" '
    '"$WEBSTACK_PREVIOUS_RELEASE_ID" "$(pwd)" "$(readlink /srv/webstack/current)" '
    f">> {PREDEPLOY_LOG}"
)


def test_a_failing_predeploy_command_stops_the_deploy_before_any_host_switches():
    (good,) = app_releases()
    since = int(time.time())
    run = deploy_app(
        built_artifact(good),
        check=False,
        nextjs_release_id=f"{good}-migrate",
        # As a list: the argv. The app's DATABASE_URL is there, the
        # migration says so and fails.
        nextjs_predeploy_command=[
            "node",
            "-e",
            "console.error('migration refused, url set:', !!process.env.DATABASE_URL);"
            " process.exit(3)",
        ],
    )
    assert run.returncode != 0, run.output[-3000:]
    # Ansible's YAML output may wrap the message anywhere between words.
    said = " ".join(run.output.split())
    failed = f"pre-deploy command of release {good}-migrate failed on app1 (exit 3)"
    assert failed in said, said[-3000:]
    assert re.search(r"migration refused, url set: true.*Nothing was switched", said), said[-3000:]
    # No host switched or even left the pool; the app's secrets stayed out of
    # the output and out of the canary's journal (sudo logs command lines).
    assert app_releases() == {good}
    assert " down;" not in host("lb1").file(UPSTREAM).content_string
    password = secret("postgresql_app_password")
    journal = host("app1").check_output(f"journalctl --since @{since} --no-pager -o cat")
    for form in {password, quote(password, safe="")}:  # DATABASE_URL carries it URL-encoded
        assert form not in run.output
        assert form not in journal


def test_a_predeploy_command_past_its_timeout_ends_with_all_it_started():
    (good,) = app_releases()
    run = deploy_app(
        built_artifact(good),
        check=False,
        nextjs_release_id=f"{good}-slow",
        # The shell ends of the TERM; what it started ignores TERM.
        nextjs_predeploy_command="(trap '' TERM; exec sleep 67); echo done",
        nextjs_predeploy_timeout=3,
    )
    assert run.returncode != 0, run.output[-3000:]
    said = " ".join(run.output.split())
    failed = (
        f"pre-deploy command of release {good}-slow failed on app1"
        " (killed: timed out after 3 s, or out of memory)"
    )
    assert failed in said, said[-3000:]
    assert "Nothing was switched" in said, said[-3000:]
    # Reported only once nothing of it was left running.
    assert host("app1").run("pgrep -f 'slee[p] 67'").rc == 1
    assert app_releases() == {good}
    assert " down;" not in host("lb1").file(UPSTREAM).content_string
    record(
        "pre-deploy command past its timeout: ended, nothing switched",
        seconds=round(run.seconds, 1),
    )


def test_a_good_release_goes_host_by_host_under_load_and_back():
    (good,) = app_releases()
    # The same build under a new release id: a real switch on every host.
    new = f"{good}-again"
    for name in hosts_in("app"):
        host(name).run(f"rm -f {PREDEPLOY_LOG}")
    started = time.monotonic()
    with load(host(CLIENT), SITE, rate=20, max_seconds=300) as summary:
        deploy = deploy_app(
            built_artifact(good),
            nextjs_release_id=new,
            # As a string: through /bin/sh -c.
            nextjs_predeploy_command=PREDEPLOY,
        )
        assert app_releases() == {new}
        # Back to the inventory's release, host by host as well.
        back = playbook("site.yml", "--tags", "app")
    assert app_releases() == {good}
    # The pre-deploy command ran once, on the canary, in the new release, with
    # the inventory's APP_ENVIRONMENT, while the canary still served the old one.
    first, *others = hosts_in("app")
    ran = host(first).file(PREDEPLOY_LOG).content_string.splitlines()
    releases = "/srv/webstack/releases"
    assert ran == [f"lab {new} {good} {releases}/{new} {releases}/{good}"], ran
    for name in others:
        assert not host(name).file(PREDEPLOY_LOG).exists, name
    host(first).run(f"rm -f {PREDEPLOY_LOG}")
    assert summary["failed"] == 0, summary["failures"][:5]
    assert summary["completed"] > 100, summary
    assert " down;" not in host("lb1").file(UPSTREAM).content_string
    record(
        "good release host by host, and back",
        seconds=round(time.monotonic() - started, 1),
        deploy_seconds=round(deploy.seconds, 1),
        back_seconds=round(back.seconds, 1),
        requests=summary["completed"],
        failed=summary["failed"],
    )
