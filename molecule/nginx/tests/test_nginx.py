"""Verify the `nginx` role from outside the load balancers.

Traffic comes from `client` (group monitoring, allowlisted from the rate limit)
and from `app1` (not allowlisted); the app servers answer with their host name
in the X-Upstream header, so a test can see which one served a request.
The tests that change state (a stopped app server, drain, a rejected
configuration, a dead nginx under keepalived) restore it before they end.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from labhosts import host, tcp_probe, wait_for

NAME = "shop.example.test"
LBS = ["lb1", "lb2"]
CONFIG_FILES = [
    "/etc/nginx/nginx.conf",
    "/etc/nginx/webstack/upstream.conf",
    "/etc/nginx/webstack/proxy.conf",
    "/etc/nginx/webstack/security-headers.conf",
    "/etc/nginx/webstack/status.conf",
    "/etc/nginx/webstack/site.conf",
]
# Key exchange groups the TLS test offers one at a time.
GROUPS = ["X25519", "secp384r1", "secp521r1", "X25519MLKEM768"]
SCENARIO = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).parents[1]))


def client():
    return host("client")


def address(name: str) -> str:
    return client().check_output(f"getent hosts {name}").split()[0]


def vip() -> str:
    return ".".join([*address("lb1").split(".")[:3], "250"])


def curl(lb: str = "lb1", ip: str | None = None) -> str:
    """curl command line that reaches the site on one load balancer by name."""
    ip = ip or address(lb)
    return f"curl -sk --max-time 10 --resolve {NAME}:443:{ip} --resolve {NAME}:80:{ip}"


def upstreams(count: int, lb: str = "lb1", path: str = "/") -> list[str]:
    """Status and serving app server of `count` requests (one connection, in order)."""
    urls = " ".join([f"-o /dev/null https://{NAME}{path}"] * count)
    fmt = "'%{http_code} %header{x-upstream}\\n'"
    out = client().check_output(f"{curl(lb)} -w {fmt} {urls}")
    return out.splitlines()


def headers(cmd_host, command: str) -> dict[str, list[str]]:
    out = cmd_host.check_output(f"{command} -o /dev/null -D -")
    found: dict[str, list[str]] = {}
    for line in out.splitlines()[1:]:
        key, _, value = line.partition(":")
        if value:
            found.setdefault(key.strip().lower(), []).append(value.strip())
    return found


def playbook(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run a playbook of this scenario against the scenario's inventory."""
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        str(SCENARIO / name),
        *args,
    ]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def alternating(lines: list[str]) -> bool:
    served = [line.split()[-1] for line in lines]
    return set(served) == {"app1", "app2"} and all(a != b for a, b in itertools.pairwise(served))


# ------------------------------------------------------------ HTTP and TLS


@pytest.mark.parametrize("lb", LBS)
def test_http_redirects_to_https(lb):
    out = client().check_output(
        f"{curl(lb)} -o /dev/null -w '%{{http_code}} %{{redirect_url}}' 'http://{NAME}/a/b?x=1'"
    )
    assert out == f"301 https://{NAME}/a/b?x=1"


@pytest.mark.parametrize("lb", LBS)
def test_unknown_names_get_no_answer(lb):
    ip = address(lb)
    plain = client().run(f"curl -s --max-time 5 -H 'Host: evil.example' http://{ip}/")
    assert plain.rc in (52, 56), "HTTP: connection closed without a response (444)"
    tls = client().run(f"curl -sk --max-time 5 https://{ip}/")
    assert tls.rc == 35, "HTTPS without a known SNI name: handshake refused"


@pytest.mark.parametrize("lb", LBS)
def test_tls_versions_ciphers_and_http2(lb):
    ip = address(lb)
    s_client = f"openssl s_client -connect {ip}:443 -servername {NAME}"
    old = client().run(f"echo | {s_client} -tls1_1 -cipher DEFAULT@SECLEVEL=0")
    assert old.rc != 0
    assert "alert protocol version" in old.stderr + old.stdout
    tls12 = client().run(f"echo | {s_client} -tls1_2")
    assert tls12.rc == 0
    assert "Protocol  : TLSv1.2" in tls12.stdout
    # Session tickets are off: the server sends none.
    assert "TLS session ticket:" not in tls12.stdout
    cbc_suites = "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"
    cbc = client().run(f"echo | {s_client} -tls1_2 -cipher {cbc_suites}")
    assert cbc.rc != 0, "CBC suites are not in the intermediate profile"
    # Key exchange groups: Mozilla's list, after the ML-KEM hybrid on Debian 13.
    groups = {g: client().run(f"echo | {s_client} -tls1_3 -groups {g}").rc == 0 for g in GROUPS}
    debian13 = 'VERSION_ID="13"' in host(lb).file("/etc/os-release").content_string
    assert groups == {
        "X25519": True,
        "secp384r1": True,
        "secp521r1": False,
        "X25519MLKEM768": debian13,
    }
    version = client().check_output(
        f"{curl(lb)} -o /dev/null -w '%{{http_version}}' https://{NAME}/"
    )
    assert version == "2"


def test_selfsigned_certificate_names_the_site():
    out = client().check_output(
        f"echo | openssl s_client -connect {address('lb1')}:443 -servername {NAME} 2>/dev/null"
        " | openssl x509 -noout -ext subjectAltName"
    )
    assert f"DNS:{NAME}" in out
    assert f"DNS:www.{NAME}" in out


def test_provided_certificate_verifies_against_its_ca():
    # lb2 serves the certificate and key given as (vault) variables.
    ip = address("lb2")
    ok = client().run(
        f"curl -s -o /dev/null --cacert /root/lab-ca.crt --resolve {NAME}:443:{ip} https://{NAME}/"
    )
    assert ok.rc == 0, ok.stderr
    key = host("lb2").file("/etc/nginx/webstack/tls/webstack.key")
    assert key.mode == 0o600
    assert key.user == "root"


@pytest.mark.parametrize("lb", LBS)
def test_security_headers_and_no_version(lb):
    found = headers(client(), f"{curl(lb)} https://{NAME}/")
    assert found["strict-transport-security"] == ["max-age=63072000; includeSubDomains"]
    assert found["content-security-policy"][0].startswith("default-src 'self'")
    # The app's own SAMEORIGIN is replaced, not duplicated.
    assert found["x-frame-options"] == ["DENY"]
    assert found["x-content-type-options"] == ["nosniff"]
    assert found["referrer-policy"] == ["strict-origin-when-cross-origin"]
    assert "camera=()" in found["permissions-policy"][0]
    assert found["server"] == ["nginx"]
    assert "x-powered-by" not in found
    # nginx's own error pages carry the headers too and name no version.
    too_big = client().run(
        f"head -c 27000000 /dev/zero | {curl(lb)} -D - --data-binary @- https://{NAME}/upload"
    )
    assert " 413" in too_big.stdout.splitlines()[0]
    assert "x-frame-options: DENY" in too_big.stdout
    assert "<center>nginx</center>" in too_big.stdout


# ------------------------------------------------------------- proxying


@pytest.mark.parametrize("lb", LBS)
def test_responses_alternate_between_the_app_servers(lb):
    lines = upstreams(8, lb)
    assert all(line.startswith("200 ") for line in lines), lines
    assert alternating(lines), lines


def test_app_sees_the_real_client_and_forwarded_headers():
    seen = json.loads(
        client().check_output(f"{curl()} -H 'X-Forwarded-For: 6.6.6.6' https://{NAME}/headers")
    )
    client_ip = address("client")
    assert seen["X-Forwarded-For"] == client_ip, "a client's own X-Forwarded-For is not trusted"
    assert seen["X-Real-IP"] == client_ip
    assert seen["X-Forwarded-Proto"] == "https"
    assert seen["Host"] == NAME
    assert len(seen["X-Request-ID"]) == 32


def test_uploads_within_the_limit_pass():
    out = client().check_output(
        f"head -c 5242880 /dev/zero | {curl()} --data-binary @- https://{NAME}/upload"
    )
    assert out.split()[1] == "5242880"


def test_gzip_and_immutable_static_assets():
    gzip = f"{curl()} -H 'Accept-Encoding: gzip'"
    big = headers(client(), f"{gzip} https://{NAME}/_next/static/chunks/big-abc123.js")
    assert big["content-encoding"] == ["gzip"]
    # The app's own answers are not compressed (BREACH), and the app is not asked to.
    page = headers(client(), f"{gzip} https://{NAME}/big")
    assert "content-encoding" not in page
    seen = json.loads(client().check_output(f"{gzip} https://{NAME}/headers"))
    assert "accept-encoding" not in {name.lower() for name in seen}
    static = headers(client(), f"{curl()} https://{NAME}/_next/static/chunks/main-abc123.js")
    assert static["cache-control"] == ["public, max-age=31536000, immutable"]
    assert static["x-frame-options"] == ["DENY"]


def test_proxy_cache_serves_the_second_request():
    path = f"/cached/{uuid.uuid4().hex}"
    first = headers(client(), f"{curl()} https://{NAME}{path}")
    second = headers(client(), f"{curl()} https://{NAME}{path}")
    assert first["x-cache-status"] == ["MISS"]
    assert second["x-cache-status"] == ["HIT"]


def test_rate_limit_answers_429_except_for_the_allowlist():
    # A proxied path: /healthz answers in the rewrite phase, before limit_req counts.
    urls = " ".join([f"-o /dev/null https://{NAME}/"] * 60)
    limited = host("app1").check_output(f"{curl()} -w '%{{http_code}}\\n' {urls}")
    codes = limited.splitlines()
    assert codes.count("429") >= 20, codes
    assert codes[:20] == ["200"] * 20, "the burst is served without delay"
    allowed = client().check_output(f"{curl()} -w '%{{http_code}}\\n' {urls}")
    assert set(allowed.splitlines()) == {"200"}


def test_json_access_log():
    marker = uuid.uuid4().hex
    client().check_output(f"{curl()} -o /dev/null https://{NAME}/log-{marker}")
    lines = host("lb1").check_output("tail -n 50 /var/log/nginx/access.json.log").splitlines()
    entry = json.loads(next(line for line in lines if marker in line))
    assert entry["status"] == 200
    assert entry["host"] == NAME
    assert entry["remote_addr"] == address("client")
    assert entry["upstream_addr"].endswith(":3000")
    assert entry["ssl_protocol"].startswith("TLS")


# ------------------------------------------------------ status and exporter


@pytest.mark.parametrize("lb", LBS)
def test_status_is_local_only(lb):
    assert (
        host(lb)
        .check_output("curl -s http://127.0.0.1:8081/stub_status")
        .startswith("Active connections")
    )
    assert client().check_output(f"{curl(lb)} https://{NAME}/healthz") == "ok"
    assert tcp_probe(client(), address(lb), 8081).rc != 0


@pytest.mark.parametrize("lb", LBS)
def test_exporter_answers_the_monitoring_group_only(lb):
    ip = address(lb)
    metrics = wait_for(
        lambda: client().run(f"curl -sf --max-time 5 http://{ip}:9113/metrics").stdout,
        timeout=30,
        what=f"exporter on {lb}",
    )
    assert "nginx_up 1" in metrics
    assert "nginx_connections_accepted" in metrics
    denied = host("app1").run(f"curl -s -o /dev/null --max-time 4 http://{ip}:9113/metrics")
    assert denied.rc == 28, "app1 is not in group monitoring: dropped"


# ------------------------------------------------------- failure handling


def test_a_stopped_app_server_causes_no_client_errors():
    host("app2").check_output("systemctl stop lab-upstream")
    try:
        lines = upstreams(30)
        assert lines == ["200 app1"] * 30
    finally:
        host("app2").check_output("systemctl start lab-upstream")
    # Back in the rotation once fail_timeout (10 s) has passed.
    wait_for(lambda: alternating(upstreams(4)), timeout=30, what="app2 back in the rotation")


def drain(target: str, action: str) -> subprocess.CompletedProcess:
    return playbook(
        "drain.yml", "-e", f"lab_drain_target={target}", "-e", f"lab_drain_action={action}"
    )


def upstream_file(lb: str) -> str:
    return host(lb).file("/etc/nginx/webstack/upstream.conf").content_string


def test_drain_and_undrain_without_client_errors():
    url = f"https://{NAME}/"
    out = "/root/drain-load.txt"
    # Requests keep coming through lb1 while drain and undrain reload nginx.
    client().check_output(
        f"rm -f {out}; systemd-run --unit lab-drain-load --collect sh -c "
        f'\'for i in $(seq 400); do {curl()} -o /dev/null -w "%{{http_code}}\\n" {url} >> {out};'
        " sleep 0.03; done'"
    )
    try:
        drained = drain("app2", "drain")
        assert drained.returncode == 0, drained.stdout[-3000:]
        for lb in LBS:
            assert "down; # app2" in upstream_file(lb)
            assert set(upstreams(6, lb)) == {"200 app1"}

        # The last active server is not drained without nginx_drain_force.
        last = drain("app1", "drain")
        assert last.returncode != 0
        assert "last active server" in last.stdout
        assert "down; # app1" not in upstream_file("lb1")

        # A converge in the middle of a rolling upgrade keeps the server drained.
        again = playbook("converge.yml", "--tags", "nginx_configure")
        assert again.returncode == 0, again.stdout[-3000:]
        assert re.search(r"lb1 +: ok=\d+ +changed=0 ", again.stdout), again.stdout[-1500:]
        assert re.search(r"lb2 +: ok=\d+ +changed=0 ", again.stdout), again.stdout[-1500:]
        assert "down; # app2" in upstream_file("lb1")
    finally:
        undrained = drain("app2", "undrain")
    assert undrained.returncode == 0, undrained.stdout[-3000:]
    wait_for(lambda: alternating(upstreams(4)), timeout=15, what="app2 back in the rotation")
    wait_for(
        lambda: client().run("systemctl is-active lab-drain-load").rc != 0,
        timeout=60,
        what="end of the request loop",
    )
    codes = client().check_output(f"cat {out}").split()
    assert len(codes) == 400
    assert set(codes) == {"200"}, "no client error while nginx reloaded"


def test_a_bad_directive_is_rolled_back_and_nginx_keeps_serving():
    def state(lb):
        files = {f: hashlib.sha256(host(lb).file(f).content).hexdigest() for f in CONFIG_FILES}
        return files, host(lb).check_output("cat /run/nginx.pid")

    before = {lb: state(lb) for lb in LBS}
    bad = playbook(
        "converge.yml",
        "--tags",
        "nginx_configure",
        "-e",
        '{"nginx_extra_server_config": ["no_such_directive on;"]}',
    )
    assert bad.returncode != 0
    assert "nginx rejected the new configuration" in bad.stdout
    assert 'unknown directive "no_such_directive"' in bad.stdout
    for lb in LBS:
        # Same files, same master process (never restarted), no backups left.
        assert state(lb) == before[lb]
        assert host(lb).run("nginx -t -q").rc == 0
        assert host(lb).check_output("find /etc/nginx -name '*~' | wc -l") == "0"
        assert alternating(upstreams(4, lb))


# ------------------------------------------------------------- keepalived


def holds_vip(lb: str) -> bool:
    return f"inet {vip()}/" in host(lb).check_output("ip -4 -o addr show")


def test_keepalived_moves_the_address_when_nginx_dies():
    wait_for(lambda: holds_vip("lb1") and not holds_vip("lb2"), timeout=30, what="VIP on lb1")
    via_vip = curl(ip=vip())
    assert client().check_output(f"{via_vip} https://{NAME}/healthz") == "ok"
    host("lb1").check_output("systemctl stop nginx")
    try:
        wait_for(lambda: holds_vip("lb2") and not holds_vip("lb1"), timeout=20, what="VIP on lb2")
        marker = uuid.uuid4().hex
        served = wait_for(
            lambda: (
                client()
                .run(f"{via_vip} -o /dev/null -w '%{{http_code}}' https://{NAME}/vip-{marker}")
                .stdout
                == "200"
            ),
            timeout=15,
            what="an answer through the moved address",
        )
        assert served
        assert marker in host("lb2").check_output("tail -n 20 /var/log/nginx/access.json.log")
    finally:
        host("lb1").check_output("systemctl start nginx")
    # lb1 has the higher priority and takes the address back once healthy.
    wait_for(lambda: holds_vip("lb1") and not holds_vip("lb2"), timeout=30, what="VIP back on lb1")
