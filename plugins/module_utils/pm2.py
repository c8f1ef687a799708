"""Pure helpers of the ``stackops.webstack.pm2`` module.

They read the output of ``pm2 jlist``, decide which PM2 commands bring an
app to the requested state, and build those commands. Nothing here runs a
process, so everything is unit tested without PM2.
"""

from __future__ import annotations

import json

STATES = ("started", "stopped", "restarted", "reloaded", "absent")
# PM2 process states that count as running (or on their way to it).
RUNNING = ("online", "launching")
# Statuses of processes that exited and that PM2 keeps restarting (or gave up on).
CRASHING = ("waiting restart", "errored")


class Pm2Error(ValueError):
    """Raised when PM2's output cannot be understood."""


def parse_jlist(text: str) -> list[dict]:
    """Process list from ``pm2 jlist``.

    PM2 may print notices (for example "In-memory PM2 is out-of-date") before
    the JSON; the first line that starts a JSON array which parses to the end
    of the output wins.
    """
    stripped = (text or "").strip()
    if not stripped:
        return []
    candidates = [stripped] + [
        stripped[stripped.index(line) :].strip()
        for line in stripped.splitlines()
        if line.lstrip().startswith("[")
    ]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, list):
            return data
    raise Pm2Error(f"pm2 jlist did not return a JSON list: {stripped[:200]!r}")


def _env(proc: dict) -> dict:
    return proc.get("pm2_env") or {}


def _env_value(proc: dict, key: str):
    """The value of environment variable ``key`` that PM2 gave this process."""
    env = _env(proc)
    if key in env:
        return env[key]
    return (env.get("env") or {}).get(key)


def summarize(procs: list[dict], name: str, report_env: tuple[str, ...] = ()) -> dict:
    """What PM2 runs under ``name``, without the environment (it may hold secrets).

    Only the variables named in ``report_env`` (which the caller knows hold
    nothing secret, e.g. a release id) are counted per value:
    ``{"RELEASE_ID": {"r2": 3, "r1": 1}}``; an instance without it counts as "".
    """
    mine = sorted(
        (p for p in procs if p.get("name") == name),
        key=lambda p: p.get("pm_id", 0),
    )
    statuses: dict[str, int] = {}
    for proc in mine:
        status = _env(proc).get("status", "unknown")
        statuses[status] = statuses.get(status, 0) + 1
    first = _env(mine[0]) if mine else {}
    mode = first.get("exec_mode", "")
    return {
        "name": name,
        "exists": bool(mine),
        "instances": len(mine),
        "online": sum(1 for p in mine if _env(p).get("status") == "online"),
        "statuses": statuses,
        "exec_mode": mode.replace("_mode", "") if mode else "",
        "pm_ids": [p.get("pm_id") for p in mine],
        "pids": [p.get("pid") for p in mine],
        "restarts": sum(int(_env(p).get("restart_time") or 0) for p in mine),
        "unstable_restarts": sum(int(_env(p).get("unstable_restarts") or 0) for p in mine),
        "script": first.get("pm_exec_path", ""),
        "cwd": first.get("pm_cwd", ""),
        "env_values": {
            key: _count(str(_env_value(p, key) or "") for p in mine) for key in report_env
        },
    }


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def ecosystem_script(text: str | None, name: str) -> str | None:
    """The ``script`` of app ``name`` in a JSON ecosystem file, or None.

    None also when the text is not JSON (a JavaScript ecosystem file) or
    names no such app: the caller then cannot compare scripts.
    """
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    apps = data.get("apps") if isinstance(data, dict) else data
    for app in apps if isinstance(apps, list) else []:
        if isinstance(app, dict) and app.get("name") == name:
            script = app.get("script")
            return script if isinstance(script, str) and script else None
    return None


def plan(
    state: str,
    summary: dict,
    instances: int | None = None,
    ecosystem: bool = False,
    script: str | None = None,
) -> list[str]:
    """Actions (in order) that bring the app from ``summary`` to ``state``.

    ``started`` is idempotent: it starts a missing app, restarts one whose
    processes are not all running, and scales to ``instances`` when given.
    ``reloaded`` and ``restarted`` always act (like systemd's), starting the
    app when it does not exist yet.

    An app none of whose processes runs because they crash-loop (``waiting
    restart``, ``errored``) is deleted and started again from its ecosystem
    file when there is one (``ecosystem``): PM2 refuses to restart or reload
    it ("Process with pid ... already exists"), which is what a rollback
    away from a release that crashes at start needs to do.

    ``script`` is the one the ecosystem file names now: when the running
    app was started with another one, the app is deleted and started again,
    because ``pm2 reload`` and ``pm2 restart`` keep the old script (a
    Next.js release going from ``server.js`` to ``next start`` or back).
    """
    if state not in STATES:
        raise Pm2Error(f"unknown state {state!r}")
    exists = summary["exists"]
    if state == "absent":
        return ["delete"] if exists else []
    if state == "stopped":
        if not exists:
            raise Pm2Error(f"app {summary['name']!r} is not known to PM2, so it cannot be stopped")
        running = sum(summary["statuses"].get(s, 0) for s in RUNNING)
        return ["stop"] if running else []
    if not exists:
        return ["start"]
    running = sum(summary["statuses"].get(s, 0) for s in RUNNING)
    crashing = sum(summary["statuses"].get(s, 0) for s in CRASHING)
    if ecosystem and crashing and not running:
        return ["delete", "start"]
    if ecosystem and script and summary.get("script") and summary["script"] != script:
        return ["delete", "start"]
    # A known app with processes that are not running (stopped, errored, or
    # "waiting restart" in a crash loop) is restarted: `pm2 start` refuses an
    # app whose crashed process is still registered ("Process ... already
    # exists"). Processes on their way up (launching) count as running.
    actions: list[str] = []
    if state == "started" and running < summary["instances"]:
        actions.append("restart")
    elif state == "reloaded":
        actions.append("reload")
    elif state == "restarted":
        actions.append("restart")
    if instances and instances != summary["instances"]:
        actions.append("scale")
    return actions


def command(
    action: str,
    name: str,
    ecosystem: str | None = None,
    instances: int | None = None,
    update_env: bool = True,
) -> list[str]:
    """pm2 arguments (without the executable) for one action of :func:`plan`."""
    if action in ("start", "reload", "restart"):
        target = [ecosystem, "--only", name] if ecosystem else [name]
        extra = ["--update-env"] if update_env and action != "start" else []
        return [action, *target, *extra]
    if action in ("stop", "delete"):
        return [action, name]
    if action == "scale":
        if not instances:
            raise Pm2Error("scale needs a number of instances")
        return ["scale", name, str(instances)]
    if action == "save":
        return ["save", "--force"]
    raise Pm2Error(f"unknown action {action!r}")


def expected(state: str, summary: dict, instances: int | None = None) -> dict:
    """The summary fields a successful run leads to (for check mode and diff)."""
    if state == "absent":
        return {"name": summary["name"], "exists": False, "instances": 0, "online": 0}
    count = instances or summary["instances"] or 1
    if state == "stopped":
        return {"name": summary["name"], "exists": True, "instances": count, "online": 0}
    return {"name": summary["name"], "exists": True, "instances": count, "online": count}


def diff_text(summary: dict) -> str:
    """Short, stable text for ``--diff``."""
    if not summary.get("exists"):
        return f"{summary['name']}: absent\n"
    return (
        f"{summary['name']}: {summary.get('instances', 0)} instance(s), "
        f"{summary.get('online', 0)} online\n"
    )


def settled(summary: dict, state: str, instances: int | None = None) -> bool:
    """True when the app reached ``state`` (all instances online, or none running)."""
    if state == "absent":
        return not summary["exists"]
    if state == "stopped":
        return not any(summary["statuses"].get(s, 0) for s in RUNNING)
    if not summary["exists"]:
        return False
    wanted = instances or summary["instances"]
    return summary["instances"] == wanted and summary["online"] == wanted


def daemon_pid(text: str | None) -> int | None:
    """PID from PM2's pid file content, or None."""
    try:
        pid = int((text or "").strip())
    except ValueError:
        return None
    return pid if pid > 0 else None
