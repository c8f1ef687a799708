"""Verify role `redis` from outside the Redis hosts.

The tests run in file order and build on each other: the master is killed,
a new one takes over, the old one comes back as a replica, a converge after
the failover changes nothing, and the `failover` entry point moves the master
again. Cluster state is read from the client host over the network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from functools import cache
from pathlib import Path

import pytest
from labhosts import host, tcp_probe, wait_for

REDIS = ["redis1", "redis2", "redis3"]
MASTER_NAME = "webstack"
PORT, SENTINEL_PORT, EXPORTER_PORT = 6379, 26379, 9121
DOWN_AFTER_S = 5  # redis_sentinel_down_after_ms default
SCENARIO = Path(__file__).resolve().parents[1]
STATE: dict[str, str] = {}


@cache
def var(name: str) -> str:
    """A variable of the inventory, templated (the secrets come from the lookup)."""
    return host("client").ansible("ansible.builtin.debug", f"var={name}", check=False)[name]


@cache
def address(name: str) -> str:
    facts = host(name).ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def name_of(ip: str) -> str:
    return next(n for n in REDIS if address(n) == ip)


def cli(target: str, *args: str, user: str = "admin", port: int = PORT, src: str = "client"):
    """redis-cli on host `src` against `target` as `user`; returns the CommandResult."""
    password = var(f"redis_{user}_password")
    argv = " ".join(["%s"] * len(args))
    return host(src).run(
        f"REDISCLI_AUTH=%s redis-cli --no-auth-warning --user %s -h %s -p %s {argv}",
        password,
        user,
        address(target),
        str(port),
        *args,
    )


def out(target: str, *args: str, **kwargs) -> str:
    result = cli(target, *args, **kwargs)
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def role(target: str) -> list[str]:
    return out(target, "ROLE").splitlines()


def role_or_nothing(target: str) -> list[str]:
    """ROLE, or [] while the server does not answer (for polling)."""
    result = cli(target, "ROLE")
    return result.stdout.split() if result.rc == 0 else []


def sentinel_masters() -> dict[str, str]:
    """What each Sentinel says the master is (asked as the app user, like the app)."""
    answers = {}
    for name in REDIS:
        result = cli(
            name, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME, user="app", port=SENTINEL_PORT
        )
        answers[name] = result.stdout.split()[0] if result.rc == 0 and result.stdout else ""
    return answers


def agreed_master() -> str | None:
    answers = set(sentinel_masters().values())
    return answers.pop() if len(answers) == 1 and "" not in answers else None


def probe(since: float | None = None, not_master: str = "", deadline: int = 40) -> dict:
    sentinels = ",".join(f"{address(n)}:{SENTINEL_PORT}" for n in REDIS)
    cmd = (
        "REDIS_PASSWORD=%s redis-probe --sentinels %s --master-name %s --user app "
        f"--deadline {deadline}"
    )
    args = [var("redis_app_password"), sentinels, MASTER_NAME]
    if since is not None:
        cmd += f" --since {since:.3f}"
    if not_master:
        cmd += " --not-master %s"
        args.append(not_master)
    result = host("client").run(cmd, *args)
    return json.loads(result.stdout.strip().splitlines()[-1])


def playbook(path: Path, *extra: str) -> dict[str, dict[str, int]]:
    """Run a playbook against the scenario's inventory; returns the recap per host."""
    proc = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(path), *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "false"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recap = {}
    for match in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", proc.stdout, re.MULTILINE):
        recap[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    assert recap, proc.stdout[-2000:]
    return recap


# ------------------------------------------------------------- steady state


def test_all_sentinels_report_the_same_master():
    master = wait_for(agreed_master, timeout=30, what="all Sentinels naming one master")
    # First deployment: the first host of the group.
    assert master == address("redis1")
    info = dict(
        zip(
            *[
                iter(
                    out(
                        "redis1", "SENTINEL", "MASTER", MASTER_NAME, port=SENTINEL_PORT
                    ).splitlines()
                )
            ]
            * 2,
            strict=True,
        )
    )
    assert info["quorum"] == "2"
    assert info["num-other-sentinels"] == "2"
    assert info["num-slaves"] == "2"
    assert info["down-after-milliseconds"] == str(DOWN_AFTER_S * 1000)
    assert out("redis2", "SENTINEL", "CKQUORUM", MASTER_NAME, port=SENTINEL_PORT).startswith("OK")


def test_replication_is_healthy():
    master = name_of(agreed_master())
    lines = role(master)
    assert lines[0] == "master"
    replicas = {lines[i] for i in range(2, len(lines), 3)}
    assert replicas == {address(n) for n in REDIS if n != master}
    for name in REDIS:
        if name == master:
            continue
        lines = role(name)
        assert lines[:4] == ["slave", address(master), str(PORT), "connected"]
    # A write through the master reaches every replica.
    token = f"{time.time():.6f}"
    assert out(master, "SET", "app:replication", token, user="app") == "OK"
    for name in REDIS:
        wait_for(
            lambda n=name: out(n, "GET", "app:replication", user="app") == token,
            timeout=10,
            what=f"the write on {name}",
        )


def test_settings_of_the_running_servers():
    for name in REDIS:
        config = out(name, "CONFIG", "GET", "maxmemory*").splitlines()
        values = dict(zip(config[::2], config[1::2], strict=True))
        assert values["maxmemory"] == str(128 * 1024 * 1024)
        assert values["maxmemory-policy"] == "allkeys-lru"
        assert out(name, "CONFIG", "GET", "appendonly").splitlines()[1] == "yes"
        assert out(name, "CONFIG", "GET", "appendfsync").splitlines()[1] == "everysec"
        assert out(name, "CONFIG", "GET", "save").splitlines()[1] != ""
        assert out(name, "CONFIG", "GET", "protected-mode").splitlines()[1] == "yes"


@pytest.mark.parametrize("name", REDIS)
def test_listens_on_the_private_address_and_loopback_only(name):
    listening = host(name).check_output("ss -Hltn")
    for port in (PORT, SENTINEL_PORT):
        local = set(re.findall(rf"(\S+):{port}\s", listening))
        assert local == {address(name), "127.0.0.1"}, (port, local)


def test_default_user_is_off():
    result = host("client").run("redis-cli -h %s -p %s PING", address("redis1"), str(PORT))
    assert "NOAUTH" in result.stdout + result.stderr
    result = host("client").run("redis-cli -h %s -p %s PING", address("redis1"), str(SENTINEL_PORT))
    assert "NOAUTH" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["FLUSHALL"],
        ["FLUSHDB"],
        ["CONFIG", "GET", "maxmemory"],
        ["CONFIG", "SET", "maxmemory", "1"],
        ["KEYS", "*"],
        ["DEBUG", "SLEEP", "0"],
        ["SHUTDOWN", "NOSAVE"],
        ["ACL", "LIST"],
        ["SET", "not-app:key", "x"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_app_user_is_refused_what_it_does_not_need(command):
    master = name_of(agreed_master())
    result = cli(master, *command, user="app")
    # DEBUG is also off for remote clients (enable-debug-command), so it can
    # fail before the ACL check; ACL DRYRUN shows the ACL refuses it too.
    assert "NOPERM" in result.stdout or "not allowed" in result.stdout, result.stdout
    verdict = out(master, "ACL", "DRYRUN", "app", *command)
    assert verdict != "OK"
    assert "no permissions" in verdict
    # and the data is still there
    assert out(master, "EXISTS", "app:replication", user="app") == "1"


def test_app_user_may_only_discover_through_sentinel():
    for command in (
        ["SENTINEL", "FAILOVER", MASTER_NAME],
        ["SENTINEL", "SET", MASTER_NAME, "quorum", "1"],
    ):
        result = cli("redis2", *command, user="app", port=SENTINEL_PORT)
        assert "NOPERM" in result.stdout + result.stderr


def test_firewall_lets_only_app_and_redis_hosts_in():
    target = address("redis1")
    for port in (PORT, SENTINEL_PORT):
        assert tcp_probe(host("client"), target, port).rc == 0
        assert tcp_probe(host("outsider"), target, port).rc != 0, f"outsider reached {port}"
    # The exporter answers the monitoring group only, and logs in to Redis.
    metrics = host("outsider").check_output(
        f"curl -sf --max-time 5 http://{target}:{EXPORTER_PORT}/metrics"
    )
    assert re.search(r"^redis_up 1$", metrics, re.MULTILINE)
    assert re.search(r'^redis_instance_info\{.*role="master"', metrics, re.MULTILINE)
    assert tcp_probe(host("client"), target, EXPORTER_PORT).rc != 0


@pytest.mark.parametrize("name", REDIS)
def test_host_settings_are_written(name):
    h = host(name)
    assert "vm.overcommit_memory = 1" in h.file("/etc/sysctl.d/60-redis.conf").content_string
    assert h.service("redis-disable-thp").is_enabled
    # Containers have a read-only /sys: systemd skips the unit instead of failing it.
    assert h.run("systemctl is-failed redis-disable-thp").stdout.strip() != "failed"


@pytest.mark.parametrize("name", REDIS)
def test_acl_files_hold_no_clear_text_password(name):
    h = host(name)
    for path in ("/etc/redis/users.acl", "/etc/redis/sentinel-users.acl"):
        content = h.file(path).content_string
        for user in ("admin", "replication", "sentinel", "app", "exporter"):
            assert var(f"redis_{user}_password") not in content
        assert "user default off" in content


# ----------------------------------------------------------------- failover


def test_killed_master_is_replaced_within_down_after_plus_10s():
    old_ip = agreed_master()
    old = name_of(old_ip)
    STATE["old"] = old
    h = host(old)
    # Keep systemd from restarting the killed server (Restart=always).
    h.run(
        "mkdir -p /run/systemd/system/redis-server.service.d && printf '[Service]\\nRestart=no\\n' "
        "> /run/systemd/system/redis-server.service.d/zz-test.conf && systemctl daemon-reload"
    )
    killed = h.run("date +%s.%N && systemctl kill --signal=SIGKILL redis-server")
    assert killed.rc == 0, killed.stderr
    since = float(killed.stdout.split()[0])

    result = probe(since=since, not_master=old_ip, deadline=DOWN_AFTER_S + 30)
    assert result["ok"], result
    # Kept for the record (the scenario's ephemeral directory).
    if "MOLECULE_EPHEMERAL_DIRECTORY" in os.environ:
        record = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "failover.json")
        record.write_text(json.dumps(result) + "\n")
    assert result["elapsed"] < DOWN_AFTER_S + 10, result

    new_ip = wait_for(
        lambda: (m := agreed_master()) not in (None, old_ip) and m,
        timeout=30,
        what="every Sentinel naming the new master",
    )
    STATE["new"] = name_of(new_ip)
    assert result["master"] == f"{new_ip}:{PORT}"
    assert role(STATE["new"])[0] == "master"


def test_old_master_rejoins_as_replica():
    old, new = STATE["old"], STATE["new"]
    h = host(old)
    h.run(
        "rm -f /run/systemd/system/redis-server.service.d/zz-test.conf && systemctl daemon-reload"
        " && systemctl reset-failed redis-server; systemctl start redis-server"
    )
    wait_for(
        lambda: role_or_nothing(old)[:4] == ["slave", address(new), str(PORT), "connected"],
        timeout=60,
        what=f"{old} following {new}",
    )
    # It has the writes made while it was down.
    token = out(new, "GET", "app:probe", user="app")
    wait_for(
        lambda: out(old, "GET", "app:probe", user="app") == token,
        timeout=10,
        what="the old master catching up",
    )


def test_converge_after_the_failover_changes_nothing():
    recap = playbook(SCENARIO / "converge.yml")
    assert {h: r["changed"] for h, r in recap.items()} == dict.fromkeys(recap, 0)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values())
    # The topology Sentinel chose is kept.
    assert agreed_master() == address(STATE["new"])
    assert role(STATE["old"])[0] == "slave"
    lines = role(STATE["new"])
    assert lines[0] == "master"
    assert len(lines) == 2 + 3 * 2  # two replicas


def test_failover_entry_point_moves_the_master_and_is_safe_to_repeat():
    current = STATE["new"]
    recap = playbook(SCENARIO / "failover.yml", "-e", f"redis_failover_from={current}")
    assert sum(r["changed"] for r in recap.values()) >= 1
    moved = agreed_master()
    assert moved not in (None, address(current))
    assert role(current)[:4] == ["slave", moved, str(PORT), "connected"]
    # Again from the same host: it is no longer master, so nothing happens;
    # the health entry point passes.
    recap = playbook(SCENARIO / "failover.yml", "-e", f"redis_failover_from={current}")
    assert {h: r["changed"] for h, r in recap.items()} == dict.fromkeys(recap, 0)
    assert agreed_master() == moved


def test_app_writes_through_sentinel_after_all_this():
    result = probe(deadline=10)
    assert result["ok"], result
    assert result["master"] == f"{agreed_master()}:{PORT}"
