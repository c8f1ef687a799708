"""Drill: the load balancer gets its certificate from an ACME server
(nginx_tls_mode: acme, certbot, HTTP-01) and renews it. The lab's ACME
server is pebble on host s3 (tools/lab/roles/lab_s3); the site is named
shop.lab.test for it. The drill then puts the lab's own settings back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from drill import extra_vars, playbook, record, wait_for
from labhosts import host, inventory
from sitelab import CLIENT, address, wait_until_healthy

NAME = "shop.lab.test"


@pytest.fixture(scope="module", autouse=True)
def healthy_lab():
    wait_until_healthy(what="before the ACME drill")
    yield
    playbook("playbooks/loadbalancers.yml")
    wait_until_healthy(what="after the ACME drill")


def served_certificate() -> dict[str, str]:
    """Issuer, subject alternative names and serial of what lb1 presents for NAME."""
    out = host(CLIENT).check_output(
        f"echo | openssl s_client -connect {address('lb1')}:443 -servername {NAME} 2>/dev/null"
        " | openssl x509 -noout -issuer -serial -ext subjectAltName"
    )
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key in ("issuer", "serial"):
            fields[key] = value.strip()
        elif "DNS:" in line:
            fields["names"] = line.strip()
    return fields


def test_certbot_gets_a_certificate_from_the_acme_server_and_renews_it():
    ca = (Path(inventory()).parent / ".secrets" / "lab-ca" / "ca.crt").read_text()
    acme = {
        "nginx_tls_mode": "acme",
        "nginx_server_names": [NAME],
        "nginx_acme_server": "https://s3:14000/dir",
        "nginx_acme_email": "ops@lab.test",
        "nginx_acme_ca_bundle": ca,
    }
    started = time.monotonic()
    playbook("playbooks/loadbalancers.yml", *extra_vars(acme))
    issued_s = time.monotonic() - started
    first = served_certificate()
    assert "Pebble" in first["issuer"], first
    assert f"DNS:{NAME}" in first["names"], first

    # What certbot.timer starts. Pebble's certificates live one day, so
    # certbot renews at once; the deploy hook checks nginx -t and reloads.
    renewed_at = time.monotonic()
    host("lb1").check_output("systemctl start certbot.service")
    renewed = wait_for(
        lambda: (c := served_certificate())["serial"] != first["serial"] and c,
        timeout=60,
        what="the renewed certificate served",
    )
    renew_s = time.monotonic() - renewed_at
    assert "Pebble" in renewed["issuer"]

    # A second run with the same settings changes nothing.
    again = playbook("playbooks/loadbalancers.yml", *extra_vars(acme))
    assert again.changed_hosts() == {}, again.changed_tasks()
    record("acme issuance and renewal", issue_s=round(issued_s, 1), renew_s=round(renew_s, 1))
