#!/usr/bin/python
"""Module ``stackops.webstack.redis_topology_info``: what a server and its Sentinel report."""

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_topology_info
short_description: Replication role of a Redis or Valkey server and what its Sentinel says
description:
  - Asks a server for its replication role (C(ROLE)) and a Sentinel which node is master now
    (C(SENTINEL GET-MASTER-ADDR-BY-NAME), C(SENTINEL MASTER), C(SENTINEL REPLICAS),
    C(SENTINEL CKQUORUM)).
  - Never fails because a server is down, refuses the login or does not know the master yet;
    each part reports C(reachable), C(authenticated) and C(error) instead, so a play can decide
    (for example fall back to the inventory on a first deployment).
  - Talks RESP over a plain or TLS socket with the Python standard library.
author: stackops.webstack maintainers
version_added: 0.1.0
extends_documentation_fragment:
  - stackops.webstack.redis_login
options:
  server_port:
    description: Port of the Redis or Valkey server; 0 skips the server.
    type: int
    default: 0
  sentinel_port:
    description: Port of the Sentinel; 0 skips the Sentinel.
    type: int
    default: 0
  master_name:
    description: Name of the master the Sentinel monitors (needed with O(sentinel_port)).
    type: str
  timeout:
    description: Connect and read timeout in seconds.
    type: float
    default: 3
attributes:
  check_mode:
    support: full
    description: Read only; runs in check mode too.
  diff_mode:
    support: none
    description: Changes nothing.
"""

EXAMPLES = r"""
- name: Ask the local server and Sentinel
  stackops.webstack.redis_topology_info:
    server_port: 6379
    sentinel_port: 26379
    master_name: webstack
    login_user: admin
    login_password: "{{ redis_admin_password }}"
  register: topology

- name: Show who the Sentinel says is master
  ansible.builtin.debug:
    msg: "{{ topology.sentinel.master_host }}:{{ topology.sentinel.master_port }}"
"""

RETURN = r"""
server:
  description: What the server reports; empty when O(server_port) is 0.
  returned: always
  type: dict
  contains:
    reachable:
      description: A TCP (or TLS) connection could be opened.
      type: bool
    authenticated:
      description: The login was accepted.
      type: bool
    ready:
      description: The server answers PING (not loading its data set).
      type: bool
    error:
      description: Why the server could not be asked; empty when it could.
      type: str
    role:
      description: C(master) or C(replica).
      type: str
    master_host:
      description: Master this replica follows.
      type: str
    master_port:
      description: Port of that master.
      type: int
    link_status:
      description: State of the replication link (C(connected) when healthy).
      type: str
    offset:
      description: Replication offset of this server.
      type: int
    replicas:
      description: Replicas connected to this master, each C({ip, port, offset}).
      type: list
      elements: dict
sentinel:
  description: What the Sentinel reports; empty when O(sentinel_port) is 0.
  returned: always
  type: dict
  contains:
    reachable:
      description: A connection could be opened.
      type: bool
    authenticated:
      description: The login was accepted.
      type: bool
    error:
      description: Why the Sentinel could not be asked; empty when it could.
      type: str
    master_host:
      description: Address of the current master, or null when the Sentinel does not monitor it.
      type: str
    master_port:
      description: Port of the current master.
      type: int
    master_flags:
      description: Flags of the master as the Sentinel sees it (C(master), C(s_down) ...).
      type: list
      elements: str
    num_other_sentinels:
      description: Other Sentinels this one knows.
      type: int
    quorum:
      description: Configured quorum.
      type: int
    quorum_ok:
      description: C(SENTINEL CKQUORUM) says quorum and failover authorisation can be reached.
      type: bool
    quorum_message:
      description: Text of the C(SENTINEL CKQUORUM) answer.
      type: str
    replicas:
      description: Replicas the Sentinel knows, each C({ip, port, flags, link_status, offset}).
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stackops.webstack.plugins.module_utils.redis_resp import (
    LOGIN_ARGUMENT_SPEC,
    RespConnectionError,
    RespError,
    client_from_params,
    pairs_to_dict,
    parse_role,
)


def _base() -> dict:
    return {"reachable": False, "authenticated": False, "error": ""}


def _connect(client, out) -> bool:
    try:
        client.connect()
    except RespConnectionError as exc:
        out["error"] = str(exc)
        return False
    except RespError as exc:
        out.update(reachable=True, error=str(exc))
        return False
    out.update(reachable=True, authenticated=True)
    return True


def ask_server(client) -> dict:
    out = _base()
    out.update(ready=False, role=None)
    if not _connect(client, out):
        return out
    try:
        out.update(parse_role(client.command("ROLE")))
        client.command("PING")
        out["ready"] = True
    except (RespError, RespConnectionError) as exc:
        out["error"] = str(exc)
    return out


def ask_sentinel(client, name) -> dict:
    out = _base()
    out.update(master_host=None, master_port=None, replicas=[], quorum_ok=False)
    if not _connect(client, out):
        return out
    try:
        addr = client.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
        if not addr:
            out["error"] = f"this Sentinel does not monitor {name}"
            return out
        out["master_host"], out["master_port"] = addr[0], int(addr[1])
        master = pairs_to_dict(client.command("SENTINEL", "MASTER", name))
        out["master_flags"] = master.get("flags", "").split(",")
        out["num_other_sentinels"] = int(master.get("num-other-sentinels", 0))
        out["quorum"] = int(master.get("quorum", 0))
        for item in client.command("SENTINEL", "REPLICAS", name) or []:
            replica = pairs_to_dict(item)
            out["replicas"].append(
                {
                    "ip": replica.get("ip"),
                    "port": int(replica.get("port", 0)),
                    "flags": replica.get("flags", "").split(","),
                    "link_status": replica.get("master-link-status", ""),
                    "offset": int(replica.get("slave-repl-offset", 0)),
                }
            )
        try:
            out["quorum_message"] = client.command("SENTINEL", "CKQUORUM", name)
            out["quorum_ok"] = True
        except RespError as exc:
            out["quorum_message"] = str(exc)
    except (RespError, RespConnectionError) as exc:
        out["error"] = str(exc)
    return out


def main():
    module = AnsibleModule(
        argument_spec={
            **LOGIN_ARGUMENT_SPEC,
            "server_port": {"type": "int", "default": 0},
            "sentinel_port": {"type": "int", "default": 0},
            "master_name": {"type": "str"},
            "timeout": {"type": "float", "default": 3.0},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["sentinel_port"] and not params["master_name"]:
        module.fail_json(msg="sentinel_port needs master_name")

    def client(port):
        return client_from_params(params, port, params["timeout"])

    result = {"changed": False, "server": {}, "sentinel": {}}
    if params["server_port"]:
        conn = client(params["server_port"])
        try:
            result["server"] = ask_server(conn)
        finally:
            conn.close()
    if params["sentinel_port"]:
        conn = client(params["sentinel_port"])
        try:
            result["sentinel"] = ask_sentinel(conn, params["master_name"])
        finally:
            conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
