#!/usr/bin/python
"""Module ``stackops.webstack.postgresql_topology``: who is primary and what each member needs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_topology
short_description: Decide the primary and the action for each member from their own reports
description:
  - Takes the reports of M(stackops.webstack.postgresql_node_info) for every member of a cluster
    and the first-deployment intent of the inventory, and returns the primary the cluster really
    has and what to do with each member.
  - The primary is the one node that runs and is not in recovery. Without one, it is the one
    stopped node that holds data, has no C(standby.signal) and is not fenced; on a first
    deployment (no member has data) it is the intended primary.
  - Actions are C(init) (first cluster), C(primary), C(start), C(replica) (running replica, left
    alone and never re-cloned), C(rejoin) (a former primary, pg_rewind, then follow), C(clone) (no
    data, data of another cluster, or its slot lost WAL it needed) and C(unreachable).
  - Fails, changing nothing, on split brain (two running primaries), when data exists but no
    primary does (the failover playbook decides then), or for a running node of another cluster.
  - With O(failover=true) it also returns the running replica with the most WAL.
  - Pure computation; it runs anywhere and touches nothing.
author: stackops.webstack maintainers
version_added: 0.1.0
options:
  nodes:
    description: Member name (inventory order) to its node report.
    type: dict
    required: true
  intended_primary:
    description: The member the inventory names as primary for the first deployment.
    type: str
    required: true
  slot_prefix:
    description: Prefix of the physical slot of each member.
    type: str
    default: node_
  allow_reclone:
    description: Allow C(clone) for members that hold data; otherwise fail instead.
    type: bool
    default: true
  failover:
    description:
      - Return the promotion candidate instead of failing when no primary runs.
      - O(exclude) members are never candidates.
    type: bool
    default: false
  exclude:
    description: Members that must not be promoted (the failed primary).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Computes only.
  diff_mode:
    support: none
    description: Changes nothing.
"""

EXAMPLES = r"""
- name: Decide the topology from the reports of every member
  stackops.webstack.postgresql_topology:
    nodes: "{{ dict(groups['postgresql'] | zip(reports.results)) }}"
    intended_primary: "{{ groups['postgresql_primary'] | first }}"
  register: topology

- name: Show the primary
  ansible.builtin.debug:
    msg: "{{ topology.primary }} ({{ topology.actions }})"
"""

RETURN = r"""
primary:
  description: The member that is (or becomes) primary; empty in failover mode without one.
  returned: always
  type: str
bootstrap:
  description: No member has data yet; the intended primary is initialised.
  returned: always
  type: bool
system_identifier:
  description: System identifier of the cluster (null on a first deployment).
  returned: always
  type: str
actions:
  description: Member name to action.
  returned: always
  type: dict
reasons:
  description: Why a member is cloned or rejoined.
  returned: always
  type: dict
replicas:
  description: Every member except the primary.
  returned: always
  type: list
  elements: str
streaming:
  description: application_name of the replicas the primary streams to now.
  returned: always
  type: list
  elements: str
candidate:
  description: With O(failover=true), the running replica with the most WAL.
  returned: when failover
  type: str
candidate_lsn:
  description: WAL position of the candidate.
  returned: when failover
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stackops.webstack.plugins.module_utils import postgresql_topology as topo


def main():
    module = AnsibleModule(
        argument_spec={
            "nodes": {"type": "dict", "required": True},
            "intended_primary": {"type": "str", "required": True},
            "slot_prefix": {"type": "str", "default": "node_"},
            "allow_reclone": {"type": "bool", "default": True},
            "failover": {"type": "bool", "default": False},
            "exclude": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False}
    if p["failover"]:
        try:
            result["candidate"], result["candidate_lsn"] = topo.failover_candidate(
                p["nodes"], exclude=p["exclude"], prefer=list(p["nodes"])
            )
        except topo.TopologyError as exc:
            module.fail_json(msg=str(exc), **result)
        try:
            result.update(
                topo.decide(p["nodes"], p["intended_primary"], p["slot_prefix"], p["allow_reclone"])
            )
        except topo.TopologyError as exc:
            result.update(primary="", error=str(exc))
        module.exit_json(**result)
    try:
        result.update(
            topo.decide(p["nodes"], p["intended_primary"], p["slot_prefix"], p["allow_reclone"])
        )
    except (topo.TopologyError, ValueError) as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
