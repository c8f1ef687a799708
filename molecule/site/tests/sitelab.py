"""Helpers of the site scenario's tests: the lab seen from its client host (mon1)."""

from __future__ import annotations

import json
from shlex import quote

from drill import wait_for
from labhosts import address, host, hosts_in, secret

CLIENT = "mon1"  # in group monitoring: allowlisted from the rate limit, like the load
SITE = "lb1"  # a name of the site (nginx_server_names of inventories/lab)
ECOSYSTEM = "/srv/webstack/ecosystem.config.json"  # the app's PM2 file (role nextjs)


def linked_release(name: str) -> str:
    """The release app host ``name`` links as current (role nextjs)."""
    return host(name).file("/srv/webstack/current").linked_to.rsplit("/", 1)[-1]


def app_releases() -> set[str]:
    """The release each app host links as current, checked against what its
    app reports on /api/health; one entry when every host serves the same."""
    releases = set()
    for name in hosts_in("app"):
        linked = linked_release(name)
        # Each of the host's workers twice (cluster mode asks them in turn).
        ecosystem = json.loads(host(name).file(ECOSYSTEM).content_string)
        asks = 2 * ecosystem["apps"][0]["instances"]
        url = f"http://{address(name)}:3000/api/health"
        answers = host(name).check_output(
            f"for i in $(seq {asks}); do curl -sf --max-time 10 {url} || exit 1; echo; done"
        )
        assert len(answers.splitlines()) == asks, (name, answers)
        for health in map(json.loads, answers.splitlines()):
            assert health["release"] == linked, (name, health)
        releases.add(linked)
    return releases


def through_lb(path: str, method: str = "GET", data: str | None = None) -> tuple[int, str]:
    """HTTPS request from the client host through the load balancer."""
    body = f"-H 'Content-Type: application/json' --data {quote(data)}" if data else ""
    out = host(CLIENT).check_output(
        f"curl -sk --max-time 20 -o /dev/stdout -w '\\n%{{http_code}}' -X {method} {body} "
        f"--resolve {SITE}:443:{address('lb1')} https://{SITE}{path}"
    )
    text, _, status = out.rpartition("\n")
    return int(status), text


def psql(name: str, query: str, database: str = "app") -> str:
    return host(name).check_output(
        f"runuser -u postgres -- psql -XAtq -d {database} -c {quote(query)}"
    )


def postgresql_primary() -> str:
    """The member that is not in recovery (asked, not read from the inventory)."""
    primaries = [
        h
        for h in hosts_in("postgresql")
        if host(h)
        .run("runuser -u postgres -- psql -XAtq -c 'SELECT pg_is_in_recovery()'")
        .stdout.strip()
        == "f"
    ]
    assert len(primaries) == 1, f"expected one PostgreSQL primary, found {primaries}"
    return primaries[0]


def healthy() -> dict:
    """The app's health through the load balancer, when PostgreSQL and Redis answer."""
    status, text = through_lb("/api/health")
    if status != 200:
        return {}
    body = json.loads(text)
    checks = body.get("checks", {})
    ok = (
        body.get("status") == "ok"
        and checks.get("postgresql", {}).get("ok")
        and checks.get("postgresql", {}).get("in_recovery") is False
        and checks.get("redis", {}).get("ok")
    )
    return body if ok else {}


def replicas_streaming(primary: str) -> int:
    return int(psql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))


def wait_until_healthy(timeout: float = 120, what: str = "the lab healthy") -> None:
    """Every tier answers: the app through the LB, every replica streams."""
    wait_for(healthy, timeout=timeout, interval=2, what=f"{what}: app health through the LB")
    expected = len(hosts_in("postgresql")) - 1
    wait_for(
        lambda: replicas_streaming(postgresql_primary()) == expected,
        timeout=timeout,
        interval=2,
        what=f"{what}: {expected} streaming replica(s)",
    )


def prometheus(path: str) -> dict:
    """GET on the API of the lab's Prometheus (mon1, basic auth), from mon1; the JSON answer."""
    answer = host("mon1").ansible(
        "ansible.builtin.uri",
        json.dumps(
            {
                "url": f"http://{address('mon1')}:9090{path}",
                "url_username": "prometheus",
                "url_password": secret("prometheus_web_password"),
                "force_basic_auth": True,
                "return_content": True,
            }
        ),
        check=False,
    )
    assert answer.get("status") == 200, {k: v for k, v in answer.items() if k != "invocation"}
    return answer["json"]
