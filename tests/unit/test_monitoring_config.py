"""Offline checks of the Alloy, Loki and Grafana files (plugins/module_utils/monitoring_config.py).

The vendor binaries are not installed where these tests run, so the parser
of the collection is what stands between a broken template and a host. The
last tests render the roles' real templates for hosts of every group and
feed them through the same checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from ansible_collections.stackops.webstack.plugins.module_utils import monitoring_config as mc

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "roles" / "grafana" / "files" / "dashboards").glob("*.json"))
UIDS = ["webstack-prometheus", "webstack-loki"]

GOOD_ALLOY = textwrap.dedent(
    """
    // comment
    logging {
      level  = "info"
      format = "logfmt"
    }

    loki.write "default" {
      endpoint {
        url = "http://10.0.0.10:3100/loki/api/v1/push"
      }
      external_labels = { host = "lb1", "env" = "prod" }
    }

    local.file_match "nginx" {
      path_targets = [
        { __path__ = "/var/log/nginx/*.log", job = "nginx" },
      ]
    }

    /* block
       comment */
    loki.source.file "nginx" {
      targets    = local.file_match.nginx.targets
      forward_to = [loki.process.nginx.receiver]
    }

    loki.process "nginx" {
      stage.json {
        expressions = { status = "status" }
      }
      stage.regex {
        expression = `^(?P<ip>\\S+)`
      }
      stage.match {
        selector = "{job=\\"nginx\\"}"
      }
      forward_to = [loki.write.default.receiver]
    }

    loki.source.journal "journal" {
      max_age    = "12h"
      labels     = { job = "journal", weight = 1 + 2 * 3, on = !false }
      matches    = coalesce(env("MATCHES"), "")
      forward_to = [loki.write.default.receiver]
    }
    """
)


def errors_of(text: str) -> list[str]:
    return mc.alloy_config_errors(text)


def test_alloy_valid_configuration_passes():
    assert errors_of(GOOD_ALLOY) == []


ECHO = 'loki.echo "e" {\n}\n'
PROCESS = 'loki.process "p" {{\n  forward_to = {}\n}}\n'


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("x.y = 1\n", "must not contain dots"),
        ("x = 1\n", "outside of any block"),
        # multi-line lists and objects need a trailing comma, as in Alloy itself
        (ECHO + PROCESS.format("[\n    loki.echo.e.receiver\n  ]"), "missing ','"),
        ('logging {\n  level = {\n    a = "a"\n  }\n}\n', "missing ','"),
        ('loki.writer "x" {\n}\n', "unknown component 'loki.writer'"),
        (PROCESS.format("[loki.write.nope.receiver]"), "'nope', which is not defined"),
        (ECHO + PROCESS.format("[loki.echo.e.nothing]"), "no export 'nothing'"),
        (PROCESS.format("[loki.nothing.x.receiver]"), "names no known component"),
        ('loki.source.file "f" {\n  forward_to = []\n}\n', "lacks targets"),
        ('loki.write "w" {\n}\n', "needs a endpoint block"),
        (ECHO + ECHO, "defined twice"),
        ("loki.echo {\n}\n", "needs a label"),
        ('logging "x" {\n}\n', "takes no label"),
        ('loki.echo "bad-label" {\n}\n', "invalid label"),
        ('logging {\n  level = "a\\.b"\n}\n', "unknown escape"),
        ('logging {\n  level = "open\n}\n', "unterminated string"),
        ("logging {\n  level = `open\n}\n", "unterminated raw string"),
        ("logging {\n  /* open\n}\n", "unterminated block comment"),
        ('logging {\n  level = "info"\n', "missing '}'"),
        ('logging {\n  level = "info" format = "x"\n}\n', "expected a newline"),
        ('logging {\n  level = "a"\n  level = "b"\n}\n', "set twice"),
        (PROCESS.format('"x"'), "forward_to must be a list"),
        ("logging {\n  level = { a = 1, a = 2 }\n}\n", "duplicate object key"),
        ("logging {\n  level = @\n}\n", "unexpected character"),
        ("logging {\n  level = (1 + 2\n}\n", "to close the parenthesis"),
        ("logging {\n  level = [1 2]\n}\n", "expected ',' or ']'"),
    ],
)
def test_alloy_errors_are_found(broken, message):
    found = errors_of(broken)
    assert found, broken
    assert any(message in error for error in found), found


def test_alloy_errors_name_the_line():
    found = errors_of('logging {\n  level = "info"\n}\n\nloki.nope "x" {\n}\n')
    assert found == ["line 5: unknown component 'loki.nope'"]


def test_alloy_single_line_lists_need_no_trailing_comma():
    text = ECHO + PROCESS.format("[loki.echo.e.receiver, loki.echo.e.receiver]")
    assert errors_of(text) == []


GOOD_LOKI = {
    "auth_enabled": False,
    "server": {"http_listen_port": 3100, "grpc_listen_port": 9096},
    "common": {
        "path_prefix": "/var/lib/loki",
        "storage": {"filesystem": {"chunks_directory": "/var/lib/loki/chunks"}},
    },
    "schema_config": {
        "configs": [
            {
                "from": "2024-04-01",
                "store": "tsdb",
                "object_store": "filesystem",
                "schema": "v13",
                "index": {"prefix": "index_", "period": "24h"},
            }
        ]
    },
    "limits_config": {"retention_period": "744h", "reject_old_samples_max_age": "168h"},
    "compactor": {"retention_enabled": True, "delete_request_store": "filesystem"},
}


def loki_with(**changes) -> dict:
    config = json.loads(json.dumps(GOOD_LOKI))
    for path, value in changes.items():
        node = config
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if value is None:
            node.pop(keys[-1])
        else:
            node[keys[-1]] = value
    return config


def test_loki_valid_configuration_passes():
    assert mc.loki_config_errors(GOOD_LOKI) == []
    assert mc.loki_config_errors(yaml.safe_dump(GOOD_LOKI)) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (loki_with(ingestor={}), "unknown top-level key 'ingestor'"),
        (loki_with(auth_enabled="no"), "auth_enabled"),
        (loki_with(server__http_listen_port="3100"), "http_listen_port"),
        (loki_with(compactor__delete_request_store=None), "delete_request_store"),
        (loki_with(limits_config__retention_period=None), "retention_period"),
        (loki_with(limits_config__retention_period="31 days"), "not a duration"),
        (loki_with(schema_config__configs__0__store="cassandra"), "store must be one of"),
        (loki_with(schema_config__configs__0__from="01.04.2024"), "YYYY-MM-DD"),
        (loki_with(schema_config__configs__0__schema="13"), "schema must look like v13"),
        (loki_with(schema_config__configs__0__index={"prefix": "i_", "period": "168h"}), "24h"),
        (loki_with(schema_config__configs__0__object_store="floppy"), "not a known store"),
        (loki_with(schema_config={"configs": []}), "at least one period"),
        (loki_with(common__storage={"filesystem": {"chunks_directory": "chunks"}}), "absolute"),
        (loki_with(common__storage={}), "chunks_directory"),
        ("a: [", "not valid YAML"),
        ("- 1", "must be a mapping"),
    ],
)
def test_loki_errors_are_found(config, message):
    found = mc.loki_config_errors(config)
    assert any(message in error for error in found), found


def test_loki_schema_periods_must_move_forward():
    config = loki_with()
    config["schema_config"]["configs"].append(dict(config["schema_config"]["configs"][0]))
    assert any("later than" in e for e in mc.loki_config_errors(config))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_of_the_repo_is_valid(path):
    assert mc.grafana_dashboard_errors(path.read_text(), UIDS) == []


def test_the_dashboards_cover_the_stack():
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    for part in ("Hosts", "nginx", "PostgreSQL", "Redis", "App"):
        assert any(part in title for title in titles), part
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_dashboards_with_unprovisioned_sources_are_refused():
    board = json.loads(DASHBOARDS[0].read_text())
    board["panels"][1]["datasource"] = {"type": "prometheus", "uid": "someone-elses"}
    board["panels"][2]["id"] = board["panels"][3]["id"]
    board["panels"][3]["gridPos"]["x"] = 20
    board["id"] = 7
    found = mc.grafana_dashboard_errors(json.dumps(board), UIDS)
    assert any("'someone-elses', which is not provisioned" in e for e in found), found
    assert any("used twice" in e for e in found), found
    assert any("wider than" in e for e in found), found
    assert any("id must be null" in e for e in found), found
    assert mc.grafana_dashboard_errors("{", UIDS)[0].startswith("not valid JSON")
    assert mc.grafana_dashboard_errors(json.dumps({"panels": []}), UIDS)


def test_template_variables_and_builtin_sources_are_allowed():
    board = {
        "title": "x",
        "uid": "x",
        "schemaVersion": 39,
        "panels": [
            {"id": 1, "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}, "type": "row", "panels": []},
            {
                "id": 2,
                "gridPos": {"h": 4, "w": 12, "x": 0, "y": 1},
                "datasource": {"uid": "${datasource}"},
                "targets": [{"refId": "A", "datasource": {"uid": "-- Grafana --"}}],
            },
        ],
    }
    assert mc.grafana_dashboard_errors(board, []) == []


def test_datasource_checks():
    good = {
        "apiVersion": 1,
        "datasources": [
            {"name": "P", "type": "prometheus", "uid": "a", "url": "http://x", "isDefault": True},
            {"name": "L", "type": "loki", "uid": "b", "url": "http://y"},
        ],
    }
    assert mc.grafana_datasource_errors(good) == []
    assert mc.grafana_datasource_uids(yaml.safe_dump(good)) == ["a", "b"]
    bad = json.loads(json.dumps(good))
    bad["apiVersion"] = 2
    bad["datasources"][1].update(uid="a", isDefault=True, url="")
    found = mc.grafana_datasource_errors(bad)
    assert "apiVersion must be 1" in found
    assert any("uid 'a' is used twice" in e for e in found)
    assert any("lacks url" in e for e in found)
    assert any("isDefault" in e for e in found)


def test_grafana_ini_checks():
    assert mc.grafana_ini_errors('[security]\nadmin_password = """p;#w"""\n') == []
    assert mc.grafana_ini_errors("[a]\nx = 1\nx = 2\n")
    assert mc.grafana_ini_errors("[a]\n[a]\n")
    assert mc.grafana_ini_errors("no section\n")
    assert mc.grafana_ini_errors('[s]\nk = """open\n')


# --------------------------------------------- the roles' real templates


INVENTORY = {
    "all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "children": {
            "monitoring": {"hosts": {"mon1": {"webstack_private_address": "10.0.4.11"}}},
            "loadbalancers": {"hosts": {"lb1": {"webstack_private_address": "10.0.0.11"}}},
            "app": {"hosts": {"app1": {"webstack_private_address": "10.0.1.11"}}},
            "postgresql": {
                "children": {
                    "postgresql_primary": {
                        "hosts": {"db1": {"webstack_private_address": "10.0.2.11"}}
                    }
                }
            },
            "redis": {"hosts": {"redis1": {"webstack_private_address": "10.0.3.11"}}},
        },
    }
}
PLAYBOOK = """
- hosts: all
  gather_facts: false
  vars_files:
    - {root}/roles/alloy/defaults/main.yml
    - {root}/roles/alloy/vars/main.yml
    - {root}/roles/loki/defaults/main.yml
    - {root}/roles/loki/vars/main.yml
    - {root}/roles/grafana/defaults/main.yml
    - {root}/roles/grafana/vars/main.yml
  vars:
    grafana_admin_password: admin-password
    grafana_secret_key: a-secret-key-of-some-length
    grafana_prometheus_password: prometheus-password
  tasks:
    - ansible.builtin.template:
        src: {root}/roles/alloy/templates/config.alloy.j2
        dest: "{out}/{{{{ inventory_hostname }}}}.alloy"
    - ansible.builtin.template:
        src: "{root}/roles/{{{{ item.role }}}}/templates/{{{{ item.src }}}}"
        dest: "{out}/{{{{ item.dest }}}}"
      loop:
        - {{role: loki, src: config.yml.j2, dest: loki.yml}}
        - {{role: grafana, src: grafana.ini.j2, dest: grafana.ini}}
        - {{role: grafana, src: datasources.yaml.j2, dest: datasources.yaml}}
      when: inventory_hostname == 'mon1'
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    (out / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    (out / "render.yml").write_text(PLAYBOOK.format(root=ROOT, out=out))
    subprocess.run(
        ["ansible-playbook", "-i", str(out / "inventory.yml"), str(out / "render.yml")],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")),
    )
    return out


@pytest.mark.parametrize("host", ["mon1", "lb1", "app1", "db1", "redis1"])
def test_the_alloy_template_passes_the_parser_for_every_group(rendered, host):
    text = (rendered / f"{host}.alloy").read_text()
    assert mc.alloy_config_errors(text) == []
    assert 'loki.source.journal "journal"' in text
    assert "http://10.0.4.11:3100/loki/api/v1/push" in text
    assert f'host = "{host}"' in text


def test_each_host_ships_the_logs_of_its_own_groups(rendered):
    expected = {
        "lb1": ["/var/log/nginx/access.json.log", "webstack_nginx_", 'role = "loadbalancers"'],
        "app1": ["/srv/*/shared/logs/*.log", 'role = "app"'],
        "db1": ["/var/log/postgresql/*.log", 'role = "postgresql"'],
        "redis1": ['role = "redis"'],
    }
    for host, needles in expected.items():
        text = (rendered / f"{host}.alloy").read_text()
        for needle in needles:
            assert needle in text, (host, needle)
    # Monitoring, Redis and Sentinel log to the journal only.
    for host in ("mon1", "redis1"):
        assert "local.file_match" not in (rendered / f"{host}.alloy").read_text(), host
    assert "nginx" not in (rendered / "redis1.alloy").read_text()


def test_the_loki_and_grafana_templates_pass_their_checks(rendered):
    assert mc.loki_config_errors((rendered / "loki.yml").read_text()) == []
    ini = (rendered / "grafana.ini").read_text()
    assert mc.grafana_ini_errors(ini) == []
    assert "[auth.anonymous]\nenabled = false" in ini
    datasources = (rendered / "datasources.yaml").read_text()
    assert mc.grafana_datasource_errors(datasources) == []
    assert sorted(mc.grafana_datasource_uids(datasources)) == sorted(UIDS)
