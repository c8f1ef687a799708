"""Replication topology of a PostgreSQL cluster, decided from what each node reports.

Pure functions (no Ansible, no database driver), shared by the modules
``postgresql_node_info`` and ``postgresql_topology`` and unit tested directly.

A node report is the dict ``postgresql_node_info`` returns: whether the node has
a data directory, whether the server answers, ``in_recovery``, the system
identifier, LSNs, the standby and fence markers, slots and connected replicas.
The inventory only says which node was meant to be primary at the first
deployment; everything else is taken from the reports.
"""

from __future__ import annotations

import json
import re

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
_SLOT_CHARS = re.compile(r"[^a-z0-9_]")

# pg_controldata labels -> report keys
_CONTROLDATA_KEYS = {
    "Database system identifier": "system_identifier",
    "Database cluster state": "cluster_state",
    "Latest checkpoint location": "checkpoint_lsn",
    "Latest checkpoint's TimeLineID": "checkpoint_timeline",
    "Latest checkpoint's REDO location": "checkpoint_redo_lsn",
}

# Actions the role takes for a node.
INIT = "init"  # create the first cluster on this node (first deployment)
PRIMARY = "primary"  # the running primary: nothing to do
START = "start"  # stopped but healthy (replica with standby.signal, or the primary)
REPLICA = "replica"  # running replica of this cluster: keep it, never re-clone
REJOIN = "rejoin"  # stopped former primary: pg_rewind, then follow the primary
CLONE = "clone"  # no data, foreign data or a lost slot: pg_basebackup
UNREACHABLE = "unreachable"  # could not be asked: left alone


class TopologyError(ValueError):
    """The reports describe a cluster the role must not touch automatically."""


def lsn_to_int(lsn: str | None) -> int | None:
    """``'16/B374D848'`` -> integer position; None stays None."""
    if lsn in (None, ""):
        return None
    match = _LSN.match(str(lsn).strip())
    if not match:
        raise ValueError(f"not a WAL location: {lsn!r}")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def int_to_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def parse_controldata(text: str) -> dict:
    """The fields of ``pg_controldata`` output (run with LC_ALL=C) the topology needs."""
    found: dict = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if not sep:
            continue
        key = _CONTROLDATA_KEYS.get(label.strip())
        if key:
            found[key] = value.strip()
    if "checkpoint_timeline" in found:
        found["checkpoint_timeline"] = int(found["checkpoint_timeline"])
    return found


def parse_probe(output: str) -> dict:
    """The JSON object the SQL probe prints (last non-empty line of psql output)."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the SQL probe printed nothing")
    return json.loads(lines[-1])


def slot_name(prefix: str, host: str) -> str:
    """Physical slot name of a member: lower case, [a-z0-9_], at most 63 characters."""
    return _SLOT_CHARS.sub("_", f"{prefix}{host}".lower())[:63]


def application_name(host: str) -> str:
    """application_name a replica reports (what synchronous_standby_names lists)."""
    return _SLOT_CHARS.sub("_", host.lower())[:63]


def position(report: dict) -> int | None:
    """How far a node's WAL goes: written (primary), received or replayed (replica)."""
    candidates = [
        lsn_to_int(report.get(key))
        for key in ("current_lsn", "receive_lsn", "replay_lsn")
        if report.get(key)
    ]
    return max(candidates) if candidates else None


def _usable(report: dict | None) -> bool:
    """The node answered: the report holds what postgresql_node_info returns."""
    return (
        bool(report)
        and "has_data" in report
        and not report.get("unreachable")
        and not report.get("failed")
    )


def _find_primary(nodes: dict, usable: dict, intended_primary: str) -> tuple[str, bool]:
    """(primary, bootstrap) from the reports; raises TopologyError when unclear."""
    running_primaries = [
        name
        for name, report in usable.items()
        if report.get("running") and not report.get("in_recovery")
    ]
    if len(running_primaries) > 1:
        raise TopologyError(
            "more than one node runs as primary ("
            + ", ".join(running_primaries)
            + "): split brain. Stop the one that must not be primary (the failover playbook "
            "fences a node) and run again."
        )
    if running_primaries:
        return running_primaries[0], False
    with_data = [name for name, report in usable.items() if report.get("has_data")]
    if not with_data:
        if len(usable) < len(nodes):
            missing = sorted(set(nodes) - set(usable))
            raise TopologyError(
                "no member has data yet but "
                + ", ".join(missing)
                + " could not be asked; the first deployment needs every member"
            )
        return intended_primary, True
    stopped_primaries = [
        name
        for name in with_data
        if not usable[name].get("running")
        and not usable[name].get("standby_signal")
        and not usable[name].get("fenced")
    ]
    if len(stopped_primaries) == 1:
        return stopped_primaries[0], False
    if stopped_primaries:
        raise TopologyError(
            "no primary is running and several stopped nodes look like one ("
            + ", ".join(stopped_primaries)
            + "): start the right one by hand, or fence the others."
        )
    running_replicas = [name for name in with_data if usable[name].get("running")]
    raise TopologyError(
        "no primary is running"
        + (f" (replicas: {', '.join(running_replicas)})" if running_replicas else "")
        + ". Run playbooks/postgresql_failover.yml to promote a replica, or start the primary."
    )


def _member_action(name: str, report: dict, system_identifier, lost: bool) -> tuple[str, str]:
    """(action, reason) for a member that is not the primary."""
    if not _usable(report):
        return UNREACHABLE, "could not be asked"
    if not report.get("has_data"):
        return CLONE, "no data directory yet"
    if system_identifier and report.get("system_identifier") != system_identifier:
        if report.get("running"):
            raise TopologyError(
                f"{name} runs a server of another cluster (system identifier "
                f"{report.get('system_identifier')}, the primary has {system_identifier}); "
                "stop it and run again to re-clone it."
            )
        return CLONE, "its data belongs to another cluster"
    if report.get("running") and lost:
        return CLONE, "the primary removed WAL it still needed (slot lost)"
    if report.get("running"):
        state = (REPLICA, "")
    elif report.get("standby_signal") and not report.get("fenced"):
        state = (START, "")
    else:
        state = (REJOIN, "former primary (no standby.signal or fenced)")
    return state


def decide(
    nodes: dict,
    intended_primary: str,
    slot_prefix: str = "node_",
    allow_reclone: bool = True,
) -> dict:
    """Who is primary and what to do with each member.

    ``nodes`` maps every member (inventory order) to its report;
    ``intended_primary`` is the first-deployment intent from the inventory.
    Raises TopologyError for states a human must resolve (two primaries, no
    primary while data exists, a running node of another cluster).
    """
    if intended_primary not in nodes:
        raise TopologyError(f"the intended primary {intended_primary} is not a cluster member")
    usable = {name: report for name, report in nodes.items() if _usable(report)}
    primary, bootstrap = _find_primary(nodes, usable, intended_primary)
    primary_report = usable.get(primary, {})
    system_identifier = None if bootstrap else primary_report.get("system_identifier")
    lost_slots = {
        slot["name"]
        for slot in primary_report.get("slots") or []
        if slot.get("wal_status") == "lost"
    }

    actions: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for name, report in nodes.items():
        if name == primary:
            if bootstrap:
                actions[name] = INIT
            else:
                actions[name] = PRIMARY if report.get("running") else START
            continue
        lost = slot_name(slot_prefix, name) in lost_slots
        action, reason = _member_action(name, report, system_identifier, lost)
        if action == CLONE and report.get("has_data") and not allow_reclone:
            raise TopologyError(
                f"{name} must be cloned again ({reason}) but postgresql_reclone_allowed is false"
            )
        actions[name] = action
        if reason and action != UNREACHABLE:
            reasons[name] = reason

    return {
        "primary": primary,
        "bootstrap": bootstrap,
        "system_identifier": system_identifier,
        "actions": actions,
        "reasons": reasons,
        "replicas": [name for name in nodes if name != primary],
        "streaming": sorted(
            row.get("application_name")
            for row in primary_report.get("replicas") or []
            if row.get("state") == "streaming"
        ),
    }


def failover_candidate(nodes: dict, exclude: list | None = None, prefer: list | None = None):
    """The running replica with the most WAL (received, else replayed).

    Ties go to the first name in ``prefer`` (inventory order). Returns
    ``(name, lsn)``; raises TopologyError when no replica qualifies.
    """
    skip = set(exclude or [])
    order = list(prefer or nodes)
    best = None
    for name in order:
        report = nodes.get(name)
        if name in skip or not _usable(report):
            continue
        if not report.get("running") or not report.get("in_recovery"):
            continue
        pos = max(
            (
                lsn_to_int(report.get(key))
                for key in ("receive_lsn", "replay_lsn")
                if report.get(key)
            ),
            default=None,
        )
        if pos is None:
            continue
        if best is None or pos > best[1]:
            best = (name, pos)
    if best is None:
        raise TopologyError("no running replica can be promoted")
    return best[0], int_to_lsn(best[1])
