"""The pure helpers of the stackops.webstack.pm2 module."""

import json

import pytest
from ansible_collections.stackops.webstack.plugins.module_utils import pm2


def proc(name, pm_id, status="online", *, pid=100, mode="cluster_mode", restarts=0, env=None):
    return {
        "name": name,
        "pm_id": pm_id,
        "pid": pid + pm_id,
        "pm2_env": {
            "status": status,
            "exec_mode": mode,
            "restart_time": restarts,
            "unstable_restarts": 0,
            "pm_exec_path": "/srv/web/current/server.js",
            "pm_cwd": "/srv/web/current",
            "env": env or {"DATABASE_URL": "postgres://app:s3cret@db/app"},
        },
    }


def summary(procs, name="web"):
    return pm2.summarize(procs, name)


# ------------------------------------------------------------------ parse_jlist
def test_parse_plain_json():
    data = [proc("web", 0)]
    assert pm2.parse_jlist(json.dumps(data)) == data


def test_parse_empty_output_is_an_empty_list():
    assert pm2.parse_jlist("") == []
    assert pm2.parse_jlist("[]\n") == []


def test_parse_skips_notices_before_the_json():
    text = (
        ">>>> In-memory PM2 is out-of-date, do:\n>>>> $ pm2 update\n"
        "In memory PM2 version: 6.0.8\n" + json.dumps([proc("web", 0)])
    )
    assert [p["name"] for p in pm2.parse_jlist(text)] == ["web"]


def test_parse_bracket_in_a_notice_is_not_taken_for_the_list():
    text = "[PM2] Spawning PM2 daemon\n[]"
    assert pm2.parse_jlist(text) == []


def test_parse_garbage_raises():
    with pytest.raises(pm2.Pm2Error, match="did not return a JSON list"):
        pm2.parse_jlist("error: connect ECONNREFUSED")


def test_parse_json_object_is_not_a_list():
    with pytest.raises(pm2.Pm2Error):
        pm2.parse_jlist('{"name": "web"}')


# -------------------------------------------------------------------- summarize
def test_summarize_counts_instances_and_states():
    procs = [
        proc("web", 0),
        proc("web", 1, status="errored", restarts=3),
        proc("other", 2, mode="fork_mode"),
    ]
    s = summary(procs)
    assert s["exists"] is True
    assert s["instances"] == 2
    assert s["online"] == 1
    assert s["statuses"] == {"online": 1, "errored": 1}
    assert s["exec_mode"] == "cluster"
    assert s["pm_ids"] == [0, 1]
    assert s["restarts"] == 3
    assert s["script"] == "/srv/web/current/server.js"


def test_summarize_never_returns_the_environment():
    s = summary([proc("web", 0)])
    assert "s3cret" not in json.dumps(s)


def test_summarize_counts_the_reported_variables_per_value_only():
    procs = [
        proc("web", 0, env={"RELEASE_ID": "r2", "DATABASE_URL": "postgres://app:s3cret@db/app"}),
        proc("web", 1, env={"RELEASE_ID": "r1"}),
        proc("web", 2, env={}),
        proc("other", 3, env={"RELEASE_ID": "x"}),
    ]
    # PM2 also copies the app's variables to the top of pm2_env; that copy wins.
    procs[1]["pm2_env"]["RELEASE_ID"] = "r2"
    s = pm2.summarize(procs, "web", ("RELEASE_ID",))
    assert s["env_values"] == {"RELEASE_ID": {"r2": 2, "": 1}}
    assert "s3cret" not in json.dumps(s)
    assert summary(procs)["env_values"] == {}


def test_summarize_missing_app():
    s = summary([proc("other", 0)])
    assert s["exists"] is False
    assert s["instances"] == 0
    assert s["statuses"] == {}
    assert s["exec_mode"] == ""


def test_summarize_orders_by_pm_id():
    s = summary([proc("web", 3), proc("web", 1)])
    assert s["pm_ids"] == [1, 3]


# ------------------------------------------------------------------------- plan
RUNNING = [proc("web", 0), proc("web", 1)]


@pytest.mark.parametrize(
    ("state", "procs", "instances", "expected"),
    [
        ("started", [], None, ["start"]),
        ("started", RUNNING, None, []),
        ("started", RUNNING, 2, []),
        ("started", RUNNING, 4, ["scale"]),
        ("started", [proc("web", 0), proc("web", 1, status="stopped")], None, ["restart"]),
        ("started", [proc("web", 0, status="errored")], 2, ["restart", "scale"]),
        # a crash loop: `pm2 start` would refuse the registered process
        ("started", [proc("web", 0, status="waiting restart")], None, ["restart"]),
        # every process crash-loops and the ecosystem file is known: PM2 refuses
        # restart and reload of such an app, so it is deleted and started again
        ("started", [proc("web", 0, status="waiting restart")], "eco", ["delete", "start"]),
        ("restarted", [proc("web", 0, status="waiting restart")] * 2, "eco", ["delete", "start"]),
        ("reloaded", [proc("web", 0, status="errored")], "eco", ["delete", "start"]),
        # ... but not while one process still serves
        ("restarted", [proc("web", 0), proc("web", 1, status="errored")], "eco", ["restart"]),
        # on its way up: nothing to do
        ("started", [proc("web", 0), proc("web", 1, status="launching")], None, []),
        ("reloaded", RUNNING, None, ["reload"]),
        ("reloaded", [], None, ["start"]),
        ("reloaded", RUNNING, 3, ["reload", "scale"]),
        ("restarted", RUNNING, None, ["restart"]),
        ("restarted", [], 2, ["start"]),
        ("stopped", RUNNING, None, ["stop"]),
        ("stopped", [proc("web", 0, status="stopped")], None, []),
        ("stopped", [proc("web", 0, status="launching")], None, ["stop"]),
        ("absent", RUNNING, None, ["delete"]),
        ("absent", [], None, []),
    ],
)
def test_plan(state, procs, instances, expected):
    if instances == "eco":
        assert pm2.plan(state, summary(procs), None, ecosystem=True) == expected
    else:
        assert pm2.plan(state, summary(procs), instances) == expected


NEXT_START = "/srv/web/current/node_modules/next/dist/bin/next"


@pytest.mark.parametrize("state", ["started", "reloaded", "restarted"])
def test_plan_starts_afresh_when_the_ecosystem_names_another_script(state):
    # pm2 reload and restart keep the script the workers started with, so a
    # release going from server.js to next start would restart forever.
    assert pm2.plan(state, summary(RUNNING), None, ecosystem=True, script=NEXT_START) == [
        "delete",
        "start",
    ]


@pytest.mark.parametrize(
    ("state", "expected"), [("started", []), ("reloaded", ["reload"]), ("restarted", ["restart"])]
)
def test_plan_keeps_a_running_app_whose_script_is_the_same(state, expected):
    same = "/srv/web/current/server.js"
    assert pm2.plan(state, summary(RUNNING), None, ecosystem=True, script=same) == expected


def test_plan_compares_scripts_only_with_an_ecosystem_file():
    assert pm2.plan("reloaded", summary(RUNNING), None, script=NEXT_START) == ["reload"]


def test_plan_leaves_the_removal_alone_whatever_the_script():
    assert pm2.plan("absent", summary(RUNNING), None, ecosystem=True, script=NEXT_START) == [
        "delete"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            json.dumps(
                {"apps": [{"name": "other", "script": "a.js"}, {"name": "web", "script": "b.js"}]}
            ),
            "b.js",
        ),
        (json.dumps([{"name": "web", "script": "c.js"}]), "c.js"),
        (json.dumps({"apps": [{"name": "other", "script": "a.js"}]}), None),
        (json.dumps({"apps": [{"name": "web"}]}), None),
        (json.dumps({"apps": [{"name": "web", "script": ""}]}), None),
        ("module.exports = { apps: [] }", None),
        ("", None),
        (None, None),
    ],
)
def test_ecosystem_script(text, expected):
    assert pm2.ecosystem_script(text, "web") == expected


def test_plan_cannot_stop_an_unknown_app():
    with pytest.raises(pm2.Pm2Error, match="not known to PM2"):
        pm2.plan("stopped", summary([]))


def test_plan_rejects_unknown_state():
    with pytest.raises(pm2.Pm2Error, match="unknown state"):
        pm2.plan("running", summary(RUNNING))


# ---------------------------------------------------------------------- command
ECO = "/srv/web/ecosystem.config.json"


@pytest.mark.parametrize(
    ("action", "ecosystem", "update_env", "expected"),
    [
        ("start", ECO, True, ["start", ECO, "--only", "web"]),
        ("start", None, True, ["start", "web"]),
        ("reload", ECO, True, ["reload", ECO, "--only", "web", "--update-env"]),
        ("reload", None, False, ["reload", "web"]),
        ("restart", ECO, True, ["restart", ECO, "--only", "web", "--update-env"]),
        ("stop", ECO, True, ["stop", "web"]),
        ("delete", ECO, True, ["delete", "web"]),
        ("save", ECO, True, ["save", "--force"]),
    ],
)
def test_command(action, ecosystem, update_env, expected):
    assert pm2.command(action, "web", ecosystem, None, update_env) == expected


def test_scale_command_needs_instances():
    assert pm2.command("scale", "web", instances=4) == ["scale", "web", "4"]
    with pytest.raises(pm2.Pm2Error):
        pm2.command("scale", "web")


def test_unknown_action():
    with pytest.raises(pm2.Pm2Error):
        pm2.command("explode", "web")


# ------------------------------------------------------ expected, settled, diff
def test_expected_after_each_state():
    before = summary(RUNNING)
    assert pm2.expected("absent", before)["exists"] is False
    assert pm2.expected("stopped", before)["online"] == 0
    assert pm2.expected("started", before, 4)["online"] == 4
    assert pm2.expected("reloaded", summary([]))["instances"] == 1


def test_settled():
    running = summary(RUNNING)
    assert pm2.settled(running, "started")
    assert pm2.settled(running, "reloaded", 2)
    assert not pm2.settled(running, "started", 3)
    half = summary([proc("web", 0), proc("web", 1, status="launching")])
    assert not pm2.settled(half, "started")
    stopped = summary([proc("web", 0, status="stopped")])
    assert pm2.settled(stopped, "stopped")
    assert not pm2.settled(running, "stopped")
    assert pm2.settled(summary([]), "absent")
    assert not pm2.settled(summary([]), "started")


def test_diff_text():
    assert pm2.diff_text(summary(RUNNING)) == "web: 2 instance(s), 2 online\n"
    assert pm2.diff_text(summary([])) == "web: absent\n"


@pytest.mark.parametrize(
    ("text", "pid"),
    [("1234\n", 1234), ("", None), ("abc", None), ("0", None), (None, None), ("-5", None)],
)
def test_daemon_pid(text, pid):
    assert pm2.daemon_pid(text) == pid
