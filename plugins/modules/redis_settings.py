#!/usr/bin/python
"""Module ``stackops.webstack.redis_settings``: live settings of Redis, Valkey and Sentinel."""

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_settings
short_description: Apply settings to a running Redis, Valkey or Sentinel server
description:
  - Compares the wanted settings with what the running server reports and changes only the ones
    that differ, without a restart.
  - In C(server) mode it reads C(CONFIG GET), applies all differences in one C(CONFIG SET)
    (atomic, all or none) and then runs C(CONFIG REWRITE), so the change survives a restart.
  - In C(sentinel) mode it reads C(SENTINEL MASTER) and C(SENTINEL CONFIG GET), applies per-master
    options with C(SENTINEL SET) and global options with C(SENTINEL CONFIG SET); Sentinel saves
    its file itself. Options that C(SENTINEL MASTER) does not show (C(auth-user), C(auth-pass))
    are read from O(sentinel_config_file), which Sentinel rewrites after every change.
  - Made for servers that own their configuration files (Sentinel and C(CONFIG REWRITE) rewrite
    them), so a configuration management tool must not template them again.
  - Talks RESP over a plain or TLS socket with the Python standard library; the host needs no
    Python Redis package.
author: stackops.webstack maintainers
version_added: 0.1.0
extends_documentation_fragment:
  - stackops.webstack.redis_login
options:
  mode:
    description: Kind of server.
    type: str
    choices: [server, sentinel]
    default: server
  settings:
    description:
      - C(server) mode, configuration parameters as C(CONFIG SET) takes them.
      - C(sentinel) mode, global Sentinel parameters as C(SENTINEL CONFIG SET) takes them
        (C(announce-ip), C(sentinel-user), C(sentinel-pass), C(resolve-hostnames) ...).
      - Booleans become yes/no, lists are joined with spaces, sizes such as C(256mb) are
        compared in bytes.
    type: dict
    default: {}
  master_name:
    description: Name of the monitored master (C(sentinel) mode).
    type: str
  master_settings:
    description:
      - Per-master options for C(SENTINEL SET) (C(quorum), C(down-after-milliseconds),
        C(failover-timeout), C(parallel-syncs), C(auth-user), C(auth-pass)).
    type: dict
    default: {}
  sentinel_config_file:
    description:
      - Sentinel's configuration file, read for the options C(SENTINEL MASTER) does not show.
    type: path
  rewrite:
    description: Run C(CONFIG REWRITE) after a change in C(server) mode.
    type: bool
    default: true
  secret_settings:
    description: More setting names whose values are masked in results and diffs.
    type: list
    elements: str
    default: []
  login_port:
    description: Port of the server.
    type: int
    required: true
  timeout:
    description: Connect and read timeout in seconds.
    type: float
    default: 5
attributes:
  check_mode:
    support: full
    description: Reports what would change without changing it.
  diff_mode:
    support: full
    description: Shows changed settings as C(name value) lines, secrets masked.
notes:
  - Secrets (C(masterauth), C(auth-pass), C(sentinel-pass) and O(secret_settings)) are never
    returned in clear.
"""

EXAMPLES = r"""
- name: Memory limit and persistence of the running Redis server
  stackops.webstack.redis_settings:
    login_port: 6379
    login_user: admin
    login_password: "{{ redis_admin_password }}"
    settings:
      maxmemory: 2gb
      maxmemory-policy: allkeys-lru
      appendonly: true
      save: "3600 1 300 100"

- name: Failure detection of the Sentinel
  stackops.webstack.redis_settings:
    mode: sentinel
    login_port: 26379
    login_user: admin
    login_password: "{{ redis_admin_password }}"
    master_name: webstack
    sentinel_config_file: /etc/redis/sentinel.conf
    master_settings:
      down-after-milliseconds: 5000
      failover-timeout: 60000
      auth-pass: "{{ redis_sentinel_password }}"
"""

RETURN = r"""
changed_settings:
  description: Names of the settings that were (or in check mode would be) changed.
  returned: always
  type: list
  elements: str
  sample: [maxmemory]
rewritten:
  description: Whether C(CONFIG REWRITE) ran.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stackops.webstack.plugins.module_utils.redis_resp import (
    LOGIN_ARGUMENT_SPEC,
    SECRET_SETTINGS,
    RespConnectionError,
    RespError,
    changed_settings,
    client_from_params,
    diff_text,
    pairs_to_dict,
    sentinel_file_settings,
)


def flatten(changes: dict) -> list[str]:
    out = []
    for name, (_old, new) in changes.items():
        out.extend([name, new])
    return out


def server_changes(client, settings: dict) -> dict:
    if not settings:
        return {}
    current = pairs_to_dict(client.command("CONFIG", "GET", *settings))
    return changed_settings(current, settings)


def sentinel_changes(client, params) -> tuple[dict, dict]:
    name = params["master_name"]
    master = pairs_to_dict(client.command("SENTINEL", "MASTER", name))
    current = {}
    if params["sentinel_config_file"]:
        with open(params["sentinel_config_file"]) as handle:
            current.update(sentinel_file_settings(handle.read(), name))
    current.update(master)
    # Options Sentinel stores only when set: missing from the file means empty.
    for option in ("auth-user", "auth-pass"):
        current.setdefault(option, "")
    master_changes = changed_settings(current, params["master_settings"])
    global_changes = {}
    if params["settings"]:
        current_global = pairs_to_dict(client.command("SENTINEL", "CONFIG", "GET", "*"))
        global_changes = changed_settings(current_global, params["settings"])
    return master_changes, global_changes


def apply(client, params, check_mode) -> tuple[dict, bool]:
    """Compare and (unless check_mode) change; returns (changes, whether CONFIG REWRITE ran)."""
    if params["mode"] == "server":
        changes = server_changes(client, params["settings"])
        if not changes or check_mode:
            return changes, False
        client.command("CONFIG", "SET", *flatten(changes))
        if params["rewrite"]:
            client.command("CONFIG", "REWRITE")
        return changes, bool(params["rewrite"])
    master_changes, global_changes = sentinel_changes(client, params)
    if not check_mode:
        if master_changes:
            client.command("SENTINEL", "SET", params["master_name"], *flatten(master_changes))
        for name, (_old, new) in global_changes.items():
            client.command("SENTINEL", "CONFIG", "SET", name, new)
    return {**master_changes, **global_changes}, False


def main():
    module = AnsibleModule(
        argument_spec={
            **LOGIN_ARGUMENT_SPEC,
            "mode": {"type": "str", "choices": ["server", "sentinel"], "default": "server"},
            "settings": {"type": "dict", "default": {}},
            "master_name": {"type": "str"},
            "master_settings": {"type": "dict", "default": {}, "no_log": False},
            "sentinel_config_file": {"type": "path"},
            "rewrite": {"type": "bool", "default": True},
            "secret_settings": {"type": "list", "elements": "str", "default": [], "no_log": False},
            "login_port": {"type": "int", "required": True},
            "timeout": {"type": "float", "default": 5.0},
        },
        required_if=[("mode", "sentinel", ("master_name",))],
        supports_check_mode=True,
    )
    params = module.params
    secrets = SECRET_SETTINGS | set(params["secret_settings"])
    # Secret values given in the settings must never be echoed back.
    for group in ("settings", "master_settings"):
        for name, value in (params[group] or {}).items():
            if name in secrets and value not in (None, ""):
                module.no_log_values.add(str(value))

    client = client_from_params(params, params["login_port"], params["timeout"])
    try:
        client.connect()
        all_changes, rewritten = apply(client, params, module.check_mode)
    except RespConnectionError as exc:
        module.fail_json(msg=f"cannot talk to the server: {exc}")
    except RespError as exc:
        module.fail_json(msg=f"the server refused: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"cannot read {params['sentinel_config_file']}: {exc}")
    finally:
        client.close()

    result = {
        "changed": bool(all_changes),
        "changed_settings": sorted(all_changes),
        "rewritten": rewritten,
    }
    if module._diff and all_changes:
        result["diff"] = {
            "before": diff_text({k: v[0] for k, v in all_changes.items()}, secrets),
            "after": diff_text({k: v[1] for k, v in all_changes.items()}, secrets),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
