"""A release that crashes at start never reaches a client.

site.yml deploys the app host by host: the first host (the canary) leaves the
load balancers' pool, switches, fails its health gate, goes back to the
release it had and rejoins the pool; the play stops there, so no other app
host ever receives the bad release. Meanwhile a bounded load runs through the
load balancer and no request of it fails. Then a good release goes out the
same way under load, and back to the inventory's release.
"""

from __future__ import annotations

import os
import re
import tarfile
import time
from pathlib import Path

import pytest
from drill import extra_vars, load, playbook, record
from labhosts import host, hosts_in
from sitelab import CLIENT, SITE, app_releases, wait_until_healthy

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


def built_artifact(release: str) -> Path:
    """The cached artifact of a release the lab built (inventories/lab: nextjs_artifact_dir)."""
    cache = Path(os.environ.get("STACKOPS_LAB_CACHE") or "/var/cache/stackops-lab")
    artifact = cache / "nextjs-artifacts" / f"webstack-{release}.tar.gz"
    assert artifact.exists(), artifact
    return artifact


def test_a_good_release_goes_host_by_host_under_load_and_back():
    (good,) = app_releases()
    # The same build under a new release id: a real switch on every host.
    new = f"{good}-again"
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
                }
            ),
        )
        assert app_releases() == {new}
        # Back to the inventory's release, host by host as well.
        back = playbook("site.yml", "--tags", "app")
    assert app_releases() == {good}
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
