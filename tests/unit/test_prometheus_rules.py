"""The alert rules of role prometheus: structure, coverage by promtool unit tests, promtool.

The rule template is rendered with Ansible itself (role defaults and vars, two
expected PostgreSQL and Redis replicas), exactly as the molecule scenario
`monitoring` renders it before running `promtool test rules` on its Prometheus
host. Here promtool runs only when it is installed on the control node.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "prometheus"
TESTS = ROLE / "files" / "rule_tests"
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def render_rules(dest: Path) -> Path:
    """Render the rule template with the role's defaults into ``dest``; returns the file."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "webstack.rules.yml"
    settings = json.dumps(
        {
            "prometheus_alert_settings": {
                "postgresql_replicas_expected": 2,
                "redis_replicas_expected": 2,
            }
        }
    )
    subprocess.run(
        [
            "ansible",
            "localhost",
            "-c",
            "local",
            "-m",
            "ansible.builtin.template",
            "-a",
            f"src={ROLE}/templates/rules/webstack.rules.yml.j2 dest={target} "
            "variable_start_string=[[ variable_end_string=]]",
            "-e",
            f"@{ROLE}/defaults/main.yml",
            "-e",
            f"@{ROLE}/vars/main.yml",
            "-e",
            settings,
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")),
    )
    for test_file in TESTS.glob("*.yml"):
        shutil.copy(test_file, dest / test_file.name)
    return target


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    return render_rules(tmp_path_factory.mktemp("rules"))


@pytest.fixture(scope="module")
def rules(rendered) -> list[dict]:
    groups = yaml.safe_load(rendered.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts(rules) -> list[dict]:
    return [rule for rule in rules if "alert" in rule]


def test_the_seed_alerts_exist(rules):
    names = {rule["alert"] for rule in alerts(rules)}
    assert {
        "TargetDown",
        "HostHighCpu",
        "HostHighMemory",
        "HostDiskWillFillSoon",
        "HTTP5xxRateHigh",
        "PostgreSQLReplicasNotStreaming",
        "PostgreSQLReplicationLagHigh",
        "PgBouncerClientsWaiting",
        "RedisMasterChanged",
        "RedisReplicasMissing",
        "BackupTooOld",
    } <= names


def test_every_alert_is_labelled_and_explained(rules):
    names = [rule["alert"] for rule in alerts(rules)]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in alerts(rules):
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        assert DURATION.match(rule.get("for", "0s")), rule["alert"]
        assert "[[" not in rule["expr"], rule["alert"]
        assert "]]" not in str(rule["annotations"]), rule["alert"]


def test_default_thresholds_are_the_agreed_ones(rules):
    by_name = {rule["alert"]: rule for rule in alerts(rules)}
    assert by_name["HostHighCpu"]["expr"].endswith("> 70")
    assert by_name["HostHighMemory"]["expr"].endswith("> 80")
    assert "> 0.1" in by_name["HTTP5xxRateHigh"]["expr"]
    assert "predict_linear" in by_name["HostDiskWillFillSoon"]["expr"]


def test_every_alert_has_a_firing_unit_test(rules):
    tested = set()
    for test_file in TESTS.glob("*.yml"):
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    tested.add(check["alertname"])
    untested = {rule["alert"] for rule in alerts(rules)} - tested
    assert untested == set(), f"alerts without a firing promtool test: {sorted(untested)}"


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed on this control node; the molecule scenario "
    "`monitoring` runs `promtool test rules` on its Prometheus host instead",
)
def test_promtool_unit_tests_pass(rendered):
    check = subprocess.run(
        ["promtool", "check", "rules", str(rendered)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for test_file in sorted(rendered.parent.glob("*.test.yml")):
        result = subprocess.run(
            ["promtool", "test", "rules", str(test_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
