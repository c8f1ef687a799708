#!/usr/bin/python
"""Module ``stackops.webstack.postgresql_node_info``: what one PostgreSQL node says about itself."""

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_node_info
short_description: Replication state of one PostgreSQL cluster, asked from the node itself
description:
  - Reports whether the Debian cluster (C(/etc/postgresql/<version>/<cluster>)) exists, whether
    its data directory holds data, and, from C(pg_controldata), the system identifier, the cluster
    state and the last checkpoint, so stopped nodes are described too.
  - When the server answers on its local socket, one SQL probe adds C(pg_is_in_recovery()), the
    WAL positions, the WAL receiver, connected replicas, physical slots and the settings that
    wait for a restart.
  - Never fails because the server is down or not installed; C(running) and C(error) say so.
  - Runs C(psql) and C(pg_controldata) as the cluster owner (through C(runuser) when the module
    runs as root).
author: stackops.webstack maintainers
version_added: 0.1.0
options:
  version:
    description:
      - Major version of the cluster, e.g. C(17). Empty skips C(pg_controldata) and the file
        checks; only the SQL probe runs (through Debian's C(psql) wrapper).
    type: str
    default: ""
  cluster:
    description: Name of the Debian cluster.
    type: str
    default: main
  data_dir:
    description: Data directory; empty means C(/var/lib/postgresql/<version>/<cluster>).
    type: path
  port:
    description: Port of the server.
    type: int
    default: 5432
  socket_dir:
    description: Directory of the server's Unix socket.
    type: path
    default: /var/run/postgresql
  owner:
    description: Operating system user that owns the cluster.
    type: str
    default: postgres
  fence_file:
    description: Marker file that says the node was fenced by a failover; reported as C(fenced).
    type: path
  timeout:
    description: Seconds the SQL probe may take.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
    description: Read only; runs in check mode too.
  diff_mode:
    support: none
    description: Changes nothing.
"""

EXAMPLES = r"""
- name: Ask every member of the cluster about itself
  stackops.webstack.postgresql_node_info:
    version: "17"
    cluster: main
  delegate_to: "{{ item }}"
  loop: "{{ groups['postgresql'] }}"
  register: nodes

- name: Is this node a replica?
  stackops.webstack.postgresql_node_info:
    version: "17"
  register: me

- name: Show it
  ansible.builtin.debug:
    msg: "{{ 'replica' if me.in_recovery else 'primary' }}"
  when: me.running
"""

RETURN = r"""
configured:
  description: The cluster's configuration directory exists.
  returned: always
  type: bool
has_data:
  description: The data directory holds a cluster (C(PG_VERSION) exists).
  returned: always
  type: bool
running:
  description: The server answered the SQL probe.
  returned: always
  type: bool
in_recovery:
  description: C(pg_is_in_recovery()); null when the server does not answer.
  returned: always
  type: bool
standby_signal:
  description: C(standby.signal) exists in the data directory.
  returned: always
  type: bool
fenced:
  description: The fence marker exists.
  returned: always
  type: bool
system_identifier:
  description: Database system identifier (from the server, else from pg_controldata).
  returned: always
  type: str
cluster_state:
  description: C(Database cluster state) from pg_controldata (e.g. C(shut down), C(in production)).
  returned: always
  type: str
checkpoint_lsn:
  description: Location of the latest checkpoint record (pg_controldata).
  returned: always
  type: str
current_lsn:
  description: C(pg_current_wal_lsn()) on a primary.
  returned: when running
  type: str
receive_lsn:
  description: C(pg_last_wal_receive_lsn()) on a replica.
  returned: when running
  type: str
replay_lsn:
  description: C(pg_last_wal_replay_lsn()) on a replica.
  returned: when running
  type: str
timeline:
  description: Current timeline (primary) or the one received (replica).
  returned: when running
  type: int
wal_receiver:
  description: C(status), C(sender_host) and C(slot_name) from C(pg_stat_wal_receiver), or null.
  returned: when running
  type: dict
replicas:
  description: Rows of C(pg_stat_replication) (name, address, state, sync_state, replay_lsn).
  returned: when running
  type: list
  elements: dict
slots:
  description: Physical replication slots (name, active, wal_status).
  returned: when running
  type: list
  elements: dict
pending_restart:
  description: Names of settings that changed on disk but need a restart.
  returned: when running
  type: list
  elements: str
error:
  description: Why the SQL probe failed, when it did.
  returned: always
  type: str
"""

import os
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stackops.webstack.plugins.module_utils import postgresql_topology as topo

PROBE = """
SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'system_identifier', (SELECT system_identifier::text FROM pg_control_system()),
  'current_lsn', CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
  'receive_lsn', pg_last_wal_receive_lsn()::text,
  'replay_lsn', pg_last_wal_replay_lsn()::text,
  'timeline', CASE WHEN pg_is_in_recovery()
    THEN (SELECT received_tli FROM pg_stat_wal_receiver)
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  'wal_receiver', (SELECT json_build_object('status', status, 'sender_host', sender_host,
                                            'slot_name', slot_name)
                   FROM pg_stat_wal_receiver),
  'replicas', (SELECT coalesce(json_agg(json_build_object(
                 'application_name', application_name, 'client_addr', host(client_addr),
                 'state', state, 'sync_state', sync_state, 'replay_lsn', replay_lsn::text)
                 ORDER BY application_name), '[]'::json) FROM pg_stat_replication),
  'slots', (SELECT coalesce(json_agg(json_build_object(
              'name', slot_name, 'active', active, 'wal_status', wal_status)
              ORDER BY slot_name), '[]'::json)
            FROM pg_replication_slots WHERE slot_type = 'physical'),
  'pending_restart', (SELECT coalesce(json_agg(name ORDER BY name), '[]'::json)
                      FROM pg_settings WHERE pending_restart)
)
"""


def as_owner(owner: str, argv: list[str]) -> list[str]:
    if os.geteuid() == 0 and owner != "root":
        return ["runuser", "-u", owner, "--", *argv]
    return argv


def run(argv: list[str], timeout: int) -> tuple[int, str, str]:
    env = dict(os.environ, LC_ALL="C", LANG="C", PGCONNECT_TIMEOUT=str(timeout))
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            argv, capture_output=True, text=True, timeout=timeout, env=env, cwd="/", check=False
        )
    except FileNotFoundError as exc:
        return 127, "", str(exc)
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout} s"
    return proc.returncode, proc.stdout, proc.stderr


def main():
    module = AnsibleModule(
        argument_spec={
            "version": {"type": "str", "default": ""},
            "cluster": {"type": "str", "default": "main"},
            "data_dir": {"type": "path"},
            "port": {"type": "int", "default": 5432},
            "socket_dir": {"type": "path", "default": "/var/run/postgresql"},
            "owner": {"type": "str", "default": "postgres"},
            "fence_file": {"type": "path"},
            "timeout": {"type": "int", "default": 10},
        },
        supports_check_mode=True,
    )
    p = module.params
    version, cluster, owner = str(p["version"]).strip(), p["cluster"], p["owner"]
    result = {
        "changed": False,
        "configured": False,
        "has_data": False,
        "running": False,
        "in_recovery": None,
        "standby_signal": False,
        "fenced": bool(p["fence_file"]) and os.path.exists(p["fence_file"]),
        "system_identifier": None,
        "cluster_state": None,
        "checkpoint_lsn": None,
        "error": "",
    }
    if version:
        data_dir = p["data_dir"] or f"/var/lib/postgresql/{version}/{cluster}"
        result["data_dir"] = data_dir
        conf = f"/etc/postgresql/{version}/{cluster}/postgresql.conf"
        result["configured"] = os.path.exists(conf)
        result["has_data"] = os.path.exists(os.path.join(data_dir, "PG_VERSION"))
        result["standby_signal"] = os.path.exists(os.path.join(data_dir, "standby.signal"))
        controldata = f"/usr/lib/postgresql/{version}/bin/pg_controldata"
        if result["has_data"] and os.path.exists(controldata):
            rc, out, err = run(as_owner(owner, [controldata, "-D", data_dir]), p["timeout"])
            if rc == 0:
                result.update(topo.parse_controldata(out))
            else:
                result["error"] = f"pg_controldata: {err.strip() or out.strip()}"

    psql = ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", p["socket_dir"], "-p", str(p["port"])]
    rc, out, err = run(as_owner(owner, [*psql, "-d", "postgres", "-c", PROBE]), p["timeout"])
    if rc == 0:
        try:
            probe = topo.parse_probe(out)
        except ValueError as exc:
            result["error"] = f"unexpected probe output: {exc}"
        else:
            result.update(probe)
            result["running"] = True
    elif not result["error"]:
        result["error"] = (err.strip() or out.strip())[-500:]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
