"""The PM2 ecosystem file of role nextjs, rendered by Ansible's templar from `-e` strings.

`-e nextjs_standalone=false` gives the template the string "false", which Jinja
takes as true: the file started server.js, which a non-standalone build does
not have. Here the role's defaults and vars are loaded as Ansible loads them,
the `key=value` strings are parsed by the parser of `-e` (and win, as extra
vars do), and the real template is rendered with ansible-core's Templar.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.splitter import parse_kv
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "nextjs"
CURRENT = "/srv/webstack/current"


def render_ecosystem(*extra_vars: str, **values) -> dict:
    """The app of ecosystem.config.json.j2 rendered with the role's defaults and ``extra_vars``."""
    loader = DataLoader()
    variables = {"inventory_hostname": "app1", "ansible_facts": {}, "ansible_managed": "managed"}
    for name in ("defaults", "vars"):
        path = ROLE / name / "main.yml"
        variables |= loader.load_from_file(str(path), trusted_as_template=True)
    # What the role's tasks set before they write the file, then what the user gives.
    for kv in ("nextjs_bind_address=127.0.0.1 __nextjs_active=r1", *extra_vars):
        variables |= parse_kv(kv)
    variables |= values  # registered results, as the role's tasks leave them
    templar = Templar(loader=loader, variables=variables)
    source = (ROLE / "templates" / "ecosystem.config.json.j2").read_text()
    return json.loads(templar.template(trust_as_template(source)))["apps"][0]


def test_extra_vars_arrive_as_strings():
    assert parse_kv("nextjs_standalone=false") == {"nextjs_standalone": "false"}


@pytest.mark.parametrize("value", ["false", "False", "no", "0"])
def test_a_false_string_starts_next(value):
    app = render_ecosystem(f"nextjs_standalone={value}")
    assert app["script"] == CURRENT + "/node_modules/next/dist/bin/next"
    assert app["args"] == ["start", "--port", "3000", "--hostname", "127.0.0.1"]


@pytest.mark.parametrize("value", ["true", "yes", "1"])
def test_a_true_string_starts_the_standalone_server(value):
    app = render_ecosystem(f"nextjs_standalone={value}")
    assert app["script"] == CURRENT + "/server.js"
    assert app["args"] == []


def test_the_defaults_start_the_standalone_server():
    app = render_ecosystem()
    assert app["script"] == CURRENT + "/server.js"
    assert app["wait_ready"] is False


def marker(start: str) -> dict:
    """What slurp registers for a release marker that records ``start``."""
    text = f"release=r1\nsource=artifact\ndigest=sha256:00\nstart={start}\n"
    return {"content": base64.b64encode(text.encode()).decode(), "encoding": "base64"}


def test_a_release_starts_as_it_was_unpacked_whatever_nextjs_standalone_says_now():
    # a rollback from a next start release to a standalone one, and back
    app = render_ecosystem("nextjs_standalone=false", __nextjs_active_marker=marker("standalone"))
    assert app["script"] == CURRENT + "/server.js"
    assert app["args"] == []
    app = render_ecosystem("nextjs_standalone=true", __nextjs_active_marker=marker("next-start"))
    assert app["script"] == CURRENT + "/node_modules/next/dist/bin/next"
    assert app["args"][0] == "start"


def test_numbers_and_bools_given_as_strings_keep_their_types():
    app = render_ecosystem(
        "nextjs_standalone=false nextjs_pm2_wait_ready=true",
        "nextjs_pm2_instances=2 nextjs_pm2_kill_timeout=9000 nextjs_port=3100",
    )
    assert app["wait_ready"] is True
    assert app["instances"] == 2
    assert app["kill_timeout"] == 9000
    assert app["args"][:3] == ["start", "--port", "3100"]
    assert app["env"]["PORT"] == "3100"


@pytest.mark.parametrize(
    ("mode", "script"),
    [("next-start", "/node_modules/next/dist/bin/next"), ("standalone", "/server.js")],
)
def test_the_marker_wins_over_nextjs_start_mode(mode, script):
    other = "standalone" if mode == "next-start" else "next-start"
    app = render_ecosystem(f"nextjs_start_mode={other}", __nextjs_active_marker=marker(mode))
    assert app["script"] == CURRENT + script


@pytest.mark.parametrize(
    ("mode", "script"),
    [
        ("next-start", "/node_modules/next/dist/bin/next"),
        ("standalone", "/server.js"),
        # A release from before markers recorded the mode: as the old default.
        ("auto", "/server.js"),
    ],
)
def test_a_release_without_a_recorded_mode_starts_as_nextjs_start_mode_says(mode, script):
    app = render_ecosystem(f"nextjs_start_mode={mode}")
    assert app["script"] == CURRENT + script


def test_the_old_name_wins_over_nextjs_start_mode():
    app = render_ecosystem("nextjs_start_mode=standalone", "nextjs_standalone=false")
    assert app["script"] == CURRENT + "/node_modules/next/dist/bin/next"
