"""Values one role owns and another mirrors follow their source.

A mirror's role default names its source (`pgbackrest_pg_port:
"{{ postgresql_port | default(5432) }}"`): where the source is visible (the
same play, or set in the inventory) the mirror takes its value; elsewhere the
fallback applies, and that fallback must equal the source role's own default.
Both are checked here by rendering the defaults, so a source whose default
changes without its mirrors fails this test.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# (role of the mirror, mirror, role of the source, source)
MIRRORS = [
    ("pgbackrest", "pgbackrest_pg_port", "postgresql", "postgresql_port"),
    ("redis_backup", "redis_backup_redis_port", "redis", "redis_port"),
    ("prometheus", "prometheus_alertmanager_port", "alertmanager", "alertmanager_port"),
    ("pgbouncer", "pgbouncer_auth_user", "postgresql", "postgresql_pgbouncer_auth_user"),
    ("pgbouncer", "pgbouncer_tls_cert_file", "postgresql", "postgresql_tls_dir"),
    ("pgbouncer", "pgbouncer_tls_key_file", "postgresql", "postgresql_tls_dir"),
    ("pgbouncer", "pgbouncer_tls_ca_file", "postgresql", "postgresql_tls_dir"),
    ("pgbouncer", "pgbouncer_patroni_rest_port", "postgresql", "postgresql_patroni_rest_port"),
    ("pgbouncer", "pgbouncer_haproxy_ca_file", "pki", "pki_trust_dir"),
    ("etcd", "etcd_tls_ca_file", "pki", "pki_trust_dir"),
]
# What the source's files are called on the host, where the mirror is a path in it.
FILES = {
    "pgbouncer_tls_cert_file": "/server.crt",
    "pgbouncer_tls_key_file": "/server.key",
    "pgbouncer_tls_ca_file": "/trust.pem",
    "pgbouncer_haproxy_ca_file": "/ca.crt",
    "etcd_tls_ca_file": "/ca.crt",
}
# Role defaults are YAML values, not HTML: nothing to escape.
ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701


def defaults(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def render(expression: str, variables: dict) -> str:
    return ENV.from_string(expression).render(variables)


@pytest.mark.parametrize(
    ("mirror_role", "mirror", "source_role", "source"), MIRRORS, ids=[m[1] for m in MIRRORS]
)
def test_the_mirror_follows_its_source(mirror_role, mirror, source_role, source):
    expression = defaults(mirror_role)[mirror]
    source_default = defaults(source_role)[source]
    suffix = FILES.get(mirror, "")
    # Where the source is not visible: the fallback is the source's own default.
    assert render(expression, {}) == f"{source_default}{suffix}"
    # Where the inventory (or the source's role in the same play) sets it: that value.
    plain = "someone_else" if isinstance(source_default, str) else 7777
    other = "/srv/other" if suffix else plain
    assert render(expression, {source: other}) == f"{other}{suffix}"


def test_the_shared_wiring_does_not_shadow_the_mirrors():
    """A mirror set in group_vars/all would beat an operator's inventory group_vars/all."""
    shared = set()
    for path in (ROOT / "group_vars" / "all").glob("*.yml"):
        shared |= set(yaml.safe_load(path.read_text()) or {})
    assert shared & {m[1] for m in MIRRORS} == set()


# Jobs of prometheus_scrape_jobs whose port or CA belong to another role:
# (job, key, role of the source, source, what follows the source's value)
SCRAPE_MIRRORS = [
    ("patroni", "port", "postgresql", "postgresql_patroni_rest_port", ""),
    ("patroni", "ca_file", "pki", "pki_trust_dir", "/ca.crt"),
    ("etcd", "port", "etcd", "etcd_metrics_port", ""),
]


@pytest.mark.parametrize(
    ("job", "key", "source_role", "source", "suffix"),
    SCRAPE_MIRRORS,
    ids=[f"{m[0]}.{m[1]}" for m in SCRAPE_MIRRORS],
)
def test_scrape_jobs_follow_the_ports_and_ca_of_their_roles(job, key, source_role, source, suffix):
    jobs = {j["name"]: j for j in defaults("prometheus")["prometheus_scrape_jobs"]}
    expression = str(jobs[job][key])
    assert source in expression, f"{job}.{key} is typed by hand: {expression}"
    assert render(expression, {}) == f"{defaults(source_role)[source]}{suffix}"
    assert render(expression, {source: 4321}) == f"4321{suffix}"
