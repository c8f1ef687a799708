"""A small Debian 12 deployment, checked from outside the hosts: the site
answers through nginx with PostgreSQL 15 and Redis 7.0 behind it, Patroni 3.0
leads with etcd 3.4 and the replica streams, the first backup is in the S3
store and restores, and the baseline (sshd, firewall, fail2ban) holds on both
releases."""

from __future__ import annotations

import json

import pytest
from drill import playbook, record
from labhosts import address, host

SITE = "shop.dev.test"


def test_the_platforms_are_the_ones_under_test():
    assert host("solo").system_info.codename == "bookworm"
    assert host("db12").system_info.codename == "bookworm"
    assert host("s3").system_info.codename == "trixie"


def test_the_site_answers_through_nginx_with_every_dependency():
    out = host("s3").check_output(
        f"curl -sk --max-time 20 --resolve {SITE}:443:{address('solo')} https://{SITE}/api/health"
    )
    health = json.loads(out)
    assert health["status"] == "ok", health
    assert health["checks"]["postgresql"]["ok"] is True
    assert health["checks"]["redis"]["ok"] is True


def test_debian_12_versions_of_the_data_tier():
    solo = host("solo")
    assert solo.check_output(
        "runuser -u postgres -- psql -XAtq -c 'SHOW server_version_num'"
    ).startswith("15")
    assert solo.check_output("redis-server --version").split()[2].startswith("v=7.0")
    assert solo.check_output("pgbackrest version").startswith("pgBackRest 2.45")
    assert solo.check_output("/usr/local/bin/node --version").startswith("v22.")


def test_the_first_backup_is_in_the_store_and_the_restore_drill_passes():
    out = host("solo").check_output(
        "runuser -u postgres -- pgbackrest --stanza=webstack --output=json info"
    )
    backups = json.loads(out)[0]["backup"]
    assert [b["type"] for b in backups][:1] == ["full"]
    run = playbook("playbooks/restore_drill.yml")
    assert ": PASSED" in run.output, run.output[-2000:]
    record("stack12 restore drill (pgBackRest 2.45, PostgreSQL 15)", seconds=round(run.seconds, 1))


def test_patroni_leads_and_the_replica_streams():
    # From the other member: the firewall opens Patroni's REST API to the
    # PostgreSQL hosts, the HAProxy hosts and monitoring, not to the S3 host.
    out = host("db12").check_output(f"curl -sk --max-time 5 https://{address('solo')}:8008/cluster")
    members = {m["name"]: m for m in json.loads(out)["members"]}
    assert set(members) == {"solo", "db12"}
    leader = next(n for n, m in members.items() if m["role"] in ("leader", "master", "primary"))
    replica = next(n for n in members if n != leader)
    # Patroni 3.0 calls a streaming replica "running" (4.x says "streaming");
    # a numeric lag means it replays the leader's WAL.
    assert members[replica]["state"] in ("streaming", "running"), members
    assert isinstance(members[replica].get("lag", 0), int), members
    # Patroni 3.0 on Debian 12, with the Debian unit of PostgreSQL masked.
    assert host("solo").check_output("patroni --version").split()[-1].startswith("3.0")
    assert host(leader).run("systemctl is-enabled postgresql@15-main").stdout.strip() == "masked"


@pytest.mark.parametrize("name", ["solo", "s3"])
def test_baseline_on_both_releases(name):
    h = host(name)
    effective = h.check_output("sshd -T")
    assert "permitrootlogin no" in effective
    assert "passwordauthentication no" in effective
    assert "table inet webstack" in h.check_output("nft list tables")
    assert "policy drop" in h.check_output("nft list chain inet webstack input")
    assert h.service("fail2ban").is_running
    assert h.run("fail2ban-client status sshd").rc == 0
