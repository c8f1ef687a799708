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
from sitelab import CLIENT, ECOSYSTEM, SITE, app_releases, wait_until_healthy

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


@pytest.fixture(scope="module")
def crashing_artifact(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("crashing-release")
    (work / "server.js").write_text(CRASHING_SERVER)
    artifact = work / "crashing.tar.gz"
    with tarfile.open(artifact, "w:gz") as tar:
        tar.add(work / "server.js", arcname="server.js")
    return artifact


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
    work = tmp_path_factory.mktemp("half-stale-release")
    (work / "server.js").write_text(HALF_STALE_SERVER)
    artifact = work / "half-stale.tar.gz"
    with tarfile.open(artifact, "w:gz") as tar:
        tar.add(work / "server.js", arcname="server.js")
    return artifact


def holding(release: str) -> list[str]:
    return [name for name in hosts_in("app") if host(name).file(f"{RELEASES}/{release}").exists]


def test_a_release_that_crashes_at_start_is_rolled_back_on_the_canary_only(crashing_artifact):
    (good,) = app_releases()
    started = time.monotonic()
    with load(host(CLIENT), SITE, rate=20, max_seconds=300) as summary:
        bad = playbook(
            "site.yml",
            "--tags",
            "app",
            *extra_vars(
                {
                    "nextjs_source_type": "artifact",
                    "nextjs_source_path": str(crashing_artifact),
                    "nextjs_health_timeout": 20,
                }
            ),
            check=False,
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
    bad = playbook(
        "site.yml",
        "--tags",
        "app",
        *extra_vars(
            {
                "nextjs_source_type": "artifact",
                "nextjs_source_path": str(half_stale_artifact),
                "nextjs_health_timeout": 20,
            }
        ),
        check=False,
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


# Shaped like a release without standalone output: what PM2 runs is next's
# own command line (node_modules/next/dist/bin/next start --port P --hostname H).
NEXT_START_BIN = """\
const http = require("http");
const argv = process.argv.slice(2);
const opt = (name) => argv[argv.indexOf(name) + 1];
if (argv[0] !== "start") { console.error("expected next start, got", argv); process.exit(2); }
http.createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ status: "ok", release: process.env.RELEASE_ID, mode: "next-start" }));
}).listen(Number(opt("--port")), opt("--hostname"));
"""


@pytest.fixture(scope="module")
def next_start_artifact(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("next-start-release")
    bin_dir = work / "node_modules" / "next" / "dist" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "next").write_text(NEXT_START_BIN)
    artifact = work / "next-start.tar.gz"
    with tarfile.open(artifact, "w:gz") as tar:
        tar.add(work / "node_modules", arcname="node_modules")
    return artifact


def test_a_release_that_changes_the_start_mode_goes_out_and_back_under_load(next_start_artifact):
    (good,) = app_releases()
    with load(host(CLIENT), SITE, rate=20, max_seconds=300) as summary:
        deploy = playbook(
            "site.yml",
            "--tags",
            "app",
            *extra_vars(
                {
                    "nextjs_source_type": "artifact",
                    "nextjs_source_path": str(next_start_artifact),
                    "nextjs_standalone": "false",  # as -e writes it
                }
            ),
        )
        (started,) = app_releases()
        # Back to the inventory's standalone release, started as it was.
        back = playbook("site.yml", "--tags", "app")
    assert started != good
    assert app_releases() == {good}
    ecosystem = json.loads(host("app1").file(ECOSYSTEM).content_string)
    assert ecosystem["apps"][0]["script"].endswith("/server.js"), ecosystem["apps"][0]["script"]
    assert summary["failed"] == 0, summary["failures"][:5]
    assert " down;" not in host("lb1").file(UPSTREAM).content_string
    record(
        "start mode changed (server.js -> next start -> server.js)",
        deploy_seconds=round(deploy.seconds, 1),
        back_seconds=round(back.seconds, 1),
        requests=summary["completed"],
        failed=summary["failed"],
    )


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
    run = playbook(
        "site.yml",
        "--tags",
        "app",
        *extra_vars(
            {
                "nextjs_source_type": "artifact",
                "nextjs_source_path": str(built_artifact(good)),
                "nextjs_release_id": f"{good}-migrate",
                # As a list: the argv. The app's DATABASE_URL is there, the
                # migration says so and fails.
                "nextjs_predeploy_command": [
                    "node",
                    "-e",
                    "console.error('migration refused, url set:', !!process.env.DATABASE_URL);"
                    " process.exit(3)",
                ],
            }
        ),
        check=False,
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
    run = playbook(
        "site.yml",
        "--tags",
        "app",
        *extra_vars(
            {
                "nextjs_source_type": "artifact",
                "nextjs_source_path": str(built_artifact(good)),
                "nextjs_release_id": f"{good}-slow",
                # The shell ends of the TERM; what it started ignores TERM.
                "nextjs_predeploy_command": "(trap '' TERM; exec sleep 67); echo done",
                "nextjs_predeploy_timeout": 3,
            }
        ),
        check=False,
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
        deploy = playbook(
            "site.yml",
            "--tags",
            "app",
            *extra_vars(
                {
                    "nextjs_source_type": "artifact",
                    "nextjs_source_path": str(built_artifact(good)),
                    "nextjs_release_id": new,
                    # As a string: through /bin/sh -c.
                    "nextjs_predeploy_command": PREDEPLOY,
                }
            ),
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
