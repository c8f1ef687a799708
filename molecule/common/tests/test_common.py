"""Verify the `common` role (and the firewall it applies) from outside the hosts."""

from __future__ import annotations

import json

import pytest
from labhosts import duration_seconds, host, role_variable, tcp_probe, wait_for

ALL = ["target", "peer", "outsider"]
SSH_OPTS = (
    "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
    "-o ConnectTimeout=5"
)
KEY = "/root/.ssh/admin_ed25519"


def address(name: str) -> str:
    return host(name).ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"][
        "ansible_default_ipv4"
    ]["address"]


def sshd_config(name: str) -> dict[str, str]:
    out = host(name).check_output("sshd -T")
    config = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        config.setdefault(key, value)
    return config


@pytest.mark.parametrize("name", ALL)
def test_sshd_effective_settings(name):
    config = sshd_config(name)
    assert config["permitrootlogin"] == "no"
    assert config["passwordauthentication"] == "no"
    assert config["kbdinteractiveauthentication"] == "no"
    assert config["pubkeyauthentication"] == "yes"
    assert config["allowgroups"] == "ssh-users"
    assert config["x11forwarding"] == "no"
    assert config["allowtcpforwarding"] == "no"
    assert config["maxauthtries"] == "3"
    kex = config["kexalgorithms"].split(",")
    assert kex[0] in ("mlkem768x25519-sha256", "sntrup761x25519-sha512@openssh.com")
    assert not [k for k in kex if "sha1" in k or "group14" in k or "group-exchange" in k]
    assert not [c for c in config["ciphers"].split(",") if "cbc" in c or "3des" in c]
    assert not [m for m in config["macs"].split(",") if "sha1" in m or "md5" in m]


@pytest.mark.parametrize("name", ALL)
def test_firewall_default_drop_is_loaded(name):
    ruleset = json.loads(host(name).check_output("nft -j list chain inet webstack input"))
    chain = next(item["chain"] for item in ruleset["nftables"] if "chain" in item)
    assert chain["hook"] == "input"
    assert chain["policy"] == "drop"
    assert host(name).service("nftables").is_enabled


def test_docker_dns_survives_the_firewall():
    # The ruleset replaces only its own table; name resolution keeps working.
    assert host("peer").run("getent hosts target").rc == 0


def test_port_open_to_the_allowed_group_only():
    target = address("target")
    # The service answers locally, so a refusal below is the firewall's doing.
    assert host("target").run("curl -sf -o /dev/null http://127.0.0.1:8080/").rc == 0
    assert host("peer").run(f"curl -sf -o /dev/null --max-time 5 http://{target}:8080/").rc == 0
    denied = host("outsider").run(f"curl -sf -o /dev/null --max-time 5 http://{target}:8080/")
    assert denied.rc == 28, "the outsider must time out (dropped), not connect"


def test_admin_logs_in_with_key_and_uses_sudo():
    cmd = f"ssh {SSH_OPTS} -i {KEY} opsadmin@target 'sudo -n id -u'"
    result = host("peer").run(cmd)
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_admin_without_sudo_cannot_escalate():
    result = host("peer").run(f"ssh {SSH_OPTS} -i {KEY} auditor@target 'sudo -n true'")
    assert result.rc != 0
    assert "password is required" in result.stderr or "not allowed" in result.stderr


def test_user_outside_allowgroups_is_refused():
    result = host("peer").run(f"ssh {SSH_OPTS} -i {KEY} stranger@target true")
    assert result.rc == 255
    assert "Permission denied" in result.stderr


def test_password_logins_are_not_offered():
    result = host("peer").run(
        f"ssh {SSH_OPTS} -o PubkeyAuthentication=no -o PreferredAuthentications=password "
        "opsadmin@target true"
    )
    assert result.rc == 255
    assert "Permission denied (publickey)" in result.stderr


def test_sudoers_dropin_is_valid():
    assert host("target").run("visudo -c").rc == 0
    mode = host("target").file("/etc/sudoers.d/50-webstack-admins").mode
    assert mode == 0o440


@pytest.mark.parametrize("name", ALL)
def test_fail2ban_sshd_jail_is_active(name):
    status = host(name).check_output("fail2ban-client status sshd")
    assert "Journal matches" in status or "Currently failed" in status
    # The running jail has the role's settings, not Debian's defaults (bantime 10m).
    wanted = duration_seconds(role_variable(name, "common", "common_fail2ban_bantime"))
    assert int(host(name).check_output("fail2ban-client get sshd bantime")) == wanted


def test_fail2ban_bans_a_brute_force_source():
    target, outsider = host("target"), host("outsider")
    outsider_ip = address("outsider")
    target_ip = address("target")
    target.run(f"fail2ban-client set sshd unbanip {outsider_ip}")
    try:
        for _ in range(6):
            outsider.run(f"ssh {SSH_OPTS} -i {KEY} nosuchuser@{target_ip} true")
        wait_for(
            lambda: outsider_ip in target.check_output("fail2ban-client get sshd banned"),
            timeout=30,
            what="fail2ban ban of the outsider",
        )
        # Once banned, the outsider cannot even open a TCP connection to SSH.
        assert tcp_probe(outsider, target_ip, 22).rc != 0
        assert tcp_probe(host("peer"), target_ip, 22).rc == 0
    finally:
        target.run(f"fail2ban-client set sshd unbanip {outsider_ip}")


@pytest.mark.parametrize("name", ALL)
def test_sysctl_file_keeps_what_the_stack_needs(name):
    content = host(name).file("/etc/sysctl.d/90-webstack.conf").content_string
    assert "vm.overcommit_memory=1" in content.replace(" ", "")
    assert "net.core.somaxconn=4096" in content.replace(" ", "")
    assert "net.ipv4.tcp_syncookies=1" in content.replace(" ", "")
    # The file parses: sysctl reads it without syntax errors (values that a
    # container may not set are reported as permission errors, not parse errors).
    result = host(name).run("sysctl -p /etc/sysctl.d/90-webstack.conf")
    assert "Invalid argument" not in result.stderr
    assert "cannot stat" not in result.stderr or "yama" in result.stderr


@pytest.mark.parametrize("name", ALL)
def test_unattended_upgrades_take_security_updates_only(name):
    out = host(name).check_output("unattended-upgrade --dry-run --debug 2>&1 | head -40")
    origins = [line for line in out.splitlines() if "Allowed origins" in line]
    assert origins, out
    assert "Debian-Security" in origins[0]
    assert "o=Debian,a=stable" not in origins[0]


@pytest.mark.parametrize("name", ALL)
def test_time_locale_and_journald(name):
    h = host(name)
    assert h.check_output("timedatectl show -p Timezone --value") == "Etc/UTC"
    assert "en_US.utf8" in h.check_output("locale -a")
    journald = h.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "SystemMaxUse=1G" in journald
    assert "Storage=persistent" in journald
    assert "pool 2.debian.pool.ntp.org" in h.file("/etc/chrony/chrony.conf").content_string
