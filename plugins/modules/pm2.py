"""Ansible module ``stackops.webstack.pm2``: one PM2 app, idempotently."""

from __future__ import annotations

DOCUMENTATION = r"""
module: pm2
author: stackops.webstack maintainers
short_description: Manage an app of a running PM2 daemon
description:
  - Reads C(pm2 jlist) and runs only the PM2 commands needed to bring one app (all
    instances with the same name) to the requested state, then C(pm2 save) so the
    daemon restores the same list after a restart or reboot.
  - Expects the PM2 daemon of C(pm2_home) to run already (normally under a systemd unit);
    it fails instead of letting the PM2 CLI spawn a stray daemon outside that unit.
  - PM2 commands run with a clean environment (PATH, HOME and PM2_HOME only), so nothing
    of the Ansible session leaks into the app's environment through C(--update-env).
  - The result never contains the apps' environment, which may hold secrets.
version_added: 0.1.0
options:
  name:
    description: App name (the C(name) of the app in the ecosystem file).
    type: str
    required: true
  state:
    description:
      - C(started) starts the app when it is missing, restarts it when some of its processes
        are not running (stopped, errored, or crash-looping in C(waiting restart)) and scales
        it to I(instances) when given; it changes nothing when the app runs.
      - C(reloaded) runs C(pm2 reload) (zero-downtime in cluster mode, workers are replaced
        one by one), C(restarted) runs C(pm2 restart); both always act, and start a missing app.
      - C(stopped) stops every instance; C(absent) deletes the app from PM2.
    type: str
    choices: [started, stopped, restarted, reloaded, absent]
    default: started
  ecosystem:
    description:
      - Ecosystem file (JSON or JS) that defines the app. Needed to start an app PM2 does
        not know yet; C(reloaded) and C(restarted) re-read it, so changed settings apply.
    type: path
  instances:
    description: Number of instances the app should run; C(pm2 scale) fixes a difference.
    type: int
  update_env:
    description: Pass C(--update-env) to reload and restart, so a changed environment of the
      ecosystem file applies.
    type: bool
    default: true
  save:
    description: Run C(pm2 save) after a change.
    type: bool
    default: true
  user:
    description:
      - Run PM2 as this user (through C(runuser)) when the module runs as root. Without it,
        PM2 runs as the user the module runs as (for example with C(become_user)).
    type: str
  pm2_home:
    description: PM2_HOME of the daemon; default C(~/.pm2) of the user PM2 runs as.
    type: path
  executable:
    description: pm2 executable (name on PATH or absolute path).
    type: str
    default: pm2
  path:
    description: PATH for PM2 and the apps it starts (node must be on it).
    type: str
    default: /usr/local/bin:/usr/bin:/bin
  require_daemon:
    description: Fail when the daemon of C(pm2_home) does not run (its pid file names no live
      process), instead of letting the PM2 CLI start one.
    type: bool
    default: true
  wait:
    description: Seconds to wait after a change until every instance is online (or, for
      C(stopped) and C(absent), none runs). C(0) does not wait.
    type: int
    default: 60
  report_env:
    description: Names of environment variables whose values the result counts per value over
      the app's processes (C(env_values)), e.g. a release id, to check that every worker runs
      with it. Name only variables that hold nothing secret; the rest of the environment is
      never returned.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - PM2 itself answers C(pm2 jlist) also in check mode; nothing is changed then.
"""

EXAMPLES = r"""
- name: Run the app from its ecosystem file (no change when it runs)
  stackops.webstack.pm2:
    name: webstack
    ecosystem: /srv/webstack/ecosystem.config.json
    user: webstack
    pm2_home: /srv/webstack/.pm2
    instances: 2

- name: Zero-downtime reload after a new release was linked
  stackops.webstack.pm2:
    name: webstack
    state: reloaded
    ecosystem: /srv/webstack/ecosystem.config.json
    user: webstack
    pm2_home: /srv/webstack/.pm2

- name: Remove an app
  stackops.webstack.pm2:
    name: old-app
    state: absent
    user: webstack
    pm2_home: /srv/webstack/.pm2
"""

RETURN = r"""
app:
  description: The app after the run (in check mode, before it).
  returned: always
  type: dict
  contains:
    name: {description: App name., type: str}
    exists: {description: PM2 knows the app., type: bool}
    instances: {description: Number of processes., type: int}
    online: {description: Processes in state online., type: int}
    statuses: {description: Number of processes per PM2 status., type: dict}
    exec_mode: {description: C(cluster) or C(fork)., type: str}
    pm_ids: {description: PM2 ids of the processes., type: list}
    pids: {description: Operating system pids of the processes., type: list}
    restarts: {description: Sum of PM2's restart counters., type: int}
    unstable_restarts: {description: Sum of PM2's unstable restart counters., type: int}
    script: {description: Script PM2 runs., type: str}
    cwd: {description: Working directory of the processes., type: str}
    env_values: {description: "For each variable of C(report_env), the number of processes per value
        (C(\"\") for a process without it).", type: dict}
  sample:
    name: webstack
    exists: true
    instances: 2
    online: 2
    statuses: {online: 2}
    exec_mode: cluster
before:
  description: The app before the run, same fields as C(app).
  returned: always
  type: dict
commands:
  description: The pm2 commands run (in check mode, the ones that would run).
  returned: always
  type: list
  elements: list
  sample: [["reload", "/srv/webstack/ecosystem.config.json", "--only", "webstack", "--update-env"]]
"""

import os
import pwd
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stackops.webstack.plugins.module_utils import pm2


class Pm2Runner:
    """Runs pm2 as the right user with a clean environment."""

    def __init__(self, module: AnsibleModule):
        self.module = module
        params = module.params
        user = params["user"]
        if user and os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != user:
            module.fail_json(msg=f"user={user} needs the module to run as root (become: true)")
        account = pwd.getpwnam(user) if user else pwd.getpwuid(os.geteuid())
        self.home = account.pw_dir
        self.pm2_home = params["pm2_home"] or os.path.join(self.home, ".pm2")
        self.prefix = []
        if user and os.geteuid() == 0 and account.pw_uid != 0:
            self.prefix = [module.get_bin_path("runuser", required=True), "-u", user, "--"]
        executable = params["executable"]
        if os.sep not in executable:
            executable = module.get_bin_path(
                executable, required=True, opt_dirs=params["path"].split(os.pathsep)
            )
        self.prefix += [
            "/usr/bin/env",
            "-i",
            f"PATH={params['path']}",
            f"HOME={self.home}",
            f"PM2_HOME={self.pm2_home}",
            executable,
        ]

    def run(self, args: list[str]) -> str:
        rc, out, err = self.module.run_command(self.prefix + args, cwd=self.home)
        if rc != 0:
            self.module.fail_json(
                msg=f"pm2 {' '.join(args)} failed (rc={rc}): {(err or out).strip()[-2000:]}",
                rc=rc,
                stdout=out,
                stderr=err,
            )
        return out

    def daemon_running(self) -> bool:
        try:
            with open(os.path.join(self.pm2_home, "pm2.pid")) as handle:
                pid = pm2.daemon_pid(handle.read())
        except OSError:
            return False
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def summary(self, name: str) -> dict:
        try:
            return pm2.summarize(
                pm2.parse_jlist(self.run(["jlist"])), name, tuple(self.module.params["report_env"])
            )
        except pm2.Pm2Error as exc:
            self.module.fail_json(msg=str(exc))


def wanted_script(ecosystem: str | None, name: str) -> str | None:
    """The script the ecosystem file names for the app; None when it cannot be read."""
    if not ecosystem or not ecosystem.endswith(".json"):
        return None
    try:
        with open(ecosystem, encoding="utf-8") as handle:
            return pm2.ecosystem_script(handle.read(), name)
    except OSError:
        return None


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "default": "started", "choices": list(pm2.STATES)},
            "ecosystem": {"type": "path"},
            "instances": {"type": "int"},
            "update_env": {"type": "bool", "default": True},
            "save": {"type": "bool", "default": True},
            "user": {"type": "str"},
            "pm2_home": {"type": "path"},
            "executable": {"type": "str", "default": "pm2"},
            "path": {"type": "str", "default": "/usr/local/bin:/usr/bin:/bin"},
            "require_daemon": {"type": "bool", "default": True},
            "wait": {"type": "int", "default": 60},
            "report_env": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    name, state, instances = params["name"], params["state"], params["instances"]
    if instances is not None and instances < 1:
        module.fail_json(msg="instances must be at least 1")
    ecosystem = params["ecosystem"]
    if ecosystem and not os.path.isfile(ecosystem) and not module.check_mode:
        module.fail_json(msg=f"ecosystem file {ecosystem} does not exist")

    runner = Pm2Runner(module)
    if params["require_daemon"] and not runner.daemon_running():
        module.fail_json(
            msg=(
                f"no PM2 daemon runs for PM2_HOME={runner.pm2_home}; start its systemd unit "
                "first (or set require_daemon: false to let PM2 start one)"
            )
        )

    before = runner.summary(name)
    try:
        actions = pm2.plan(
            state,
            before,
            instances,
            ecosystem=bool(ecosystem),
            script=wanted_script(ecosystem, name),
        )
    except pm2.Pm2Error as exc:
        module.fail_json(msg=str(exc), before=before)
    if any(a == "start" for a in actions) and not before["exists"] and not ecosystem:
        module.fail_json(msg=f"app {name} is not known to PM2; give ecosystem to start it")

    commands = [pm2.command(a, name, ecosystem, instances, params["update_env"]) for a in actions]
    if actions and params["save"]:
        commands.append(pm2.command("save", name))

    result = {"changed": bool(actions), "before": before, "commands": commands}
    if module.check_mode or not actions:
        after = pm2.expected(state, before, instances) if actions else before
        result["app"] = before
    else:
        for args in commands:
            runner.run(args)
        after = runner.summary(name)
        deadline = time.monotonic() + params["wait"]
        while not pm2.settled(after, state, instances) and time.monotonic() < deadline:
            time.sleep(1)
            after = runner.summary(name)
        result["app"] = after
        if params["wait"] and not pm2.settled(after, state, instances):
            module.fail_json(
                msg=(
                    f"{name} did not reach state {state} within {params['wait']} s: "
                    f"{after['statuses']} ({after['instances']} instance(s))"
                ),
                **result,
            )
    if module._diff:
        result["diff"] = {"before": pm2.diff_text(before), "after": pm2.diff_text(after)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
