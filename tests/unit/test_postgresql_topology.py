"""Topology decisions of the postgresql role (plugins/module_utils/postgresql_topology.py)."""

import pytest
from ansible_collections.stackops.webstack.plugins.module_utils import postgresql_topology as t

SYSID = "7312345678901234567"
OTHER = "7399999999999999999"

CONTROLDATA = """\
pg_control version number:            1700
Catalog version number:               202406281
Database system identifier:           7312345678901234567
Database cluster state:               shut down
pg_control last modified:             Sun 22 Nov 2026 04:33:10 AM UTC
Latest checkpoint location:           0/3000028
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000010000000000000003
Latest checkpoint's TimeLineID:       1
"""


def primary(**extra):
    report = {
        "has_data": True,
        "running": True,
        "in_recovery": False,
        "system_identifier": SYSID,
        "current_lsn": "0/5000100",
        "standby_signal": False,
        "fenced": False,
        "slots": [],
        "replicas": [],
    }
    report.update(extra)
    return report


def replica(**extra):
    report = {
        "has_data": True,
        "running": True,
        "in_recovery": True,
        "system_identifier": SYSID,
        "receive_lsn": "0/5000100",
        "replay_lsn": "0/5000100",
        "standby_signal": True,
        "fenced": False,
    }
    report.update(extra)
    return report


def stopped(**extra):
    report = {
        "has_data": True,
        "running": False,
        "in_recovery": None,
        "system_identifier": SYSID,
        "standby_signal": False,
        "fenced": False,
    }
    report.update(extra)
    return report


EMPTY = {"has_data": False, "running": False, "standby_signal": False, "fenced": False}


def test_lsn_round_trip_and_order():
    assert t.lsn_to_int("0/0") == 0
    assert t.lsn_to_int("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert t.int_to_lsn(t.lsn_to_int("16/B374D848")) == "16/B374D848"
    assert t.lsn_to_int("1/0") > t.lsn_to_int("0/FFFFFFFF")
    assert t.lsn_to_int(None) is None
    with pytest.raises(ValueError, match="not a WAL location"):
        t.lsn_to_int("not-an-lsn")


def test_parse_controldata():
    data = t.parse_controldata(CONTROLDATA)
    assert data == {
        "system_identifier": SYSID,
        "cluster_state": "shut down",
        "checkpoint_lsn": "0/3000028",
        "checkpoint_redo_lsn": "0/3000028",
        "checkpoint_timeline": 1,
    }


def test_parse_probe_takes_the_last_line():
    assert t.parse_probe('\n{"in_recovery": false}\n') == {"in_recovery": False}
    with pytest.raises(ValueError, match="printed nothing"):
        t.parse_probe("")


def test_slot_and_application_names_are_safe():
    assert t.slot_name("node_", "DB-2.example") == "node_db_2_example"
    assert len(t.slot_name("node_", "x" * 100)) == 63
    assert t.application_name("db-2") == "db_2"


def test_first_deployment_initialises_the_intended_primary():
    result = t.decide({"db1": EMPTY, "db2": EMPTY}, "db1")
    assert result["primary"] == "db1"
    assert result["bootstrap"] is True
    assert result["actions"] == {"db1": "init", "db2": "clone"}


def test_first_deployment_needs_every_member():
    with pytest.raises(t.TopologyError, match="could not be asked"):
        t.decide({"db1": EMPTY, "db2": {"unreachable": True}}, "db1")


def test_running_primary_wins_over_the_inventory():
    # After a switchover db2 is primary although the inventory still says db1.
    nodes = {"db1": replica(), "db2": primary()}
    result = t.decide(nodes, "db1")
    assert result["primary"] == "db2"
    assert result["actions"] == {"db1": "replica", "db2": "primary"}
    assert result["replicas"] == ["db1"]


def test_a_healthy_replica_is_never_cloned():
    nodes = {"db1": primary(), "db2": replica(), "db3": replica(receive_lsn="0/1")}
    assert t.decide(nodes, "db1")["actions"] == {
        "db1": "primary",
        "db2": "replica",
        "db3": "replica",
    }


def test_split_brain_stops_everything():
    with pytest.raises(t.TopologyError, match="split brain"):
        t.decide({"db1": primary(), "db2": primary()}, "db1")


def test_no_primary_with_running_replicas_asks_for_failover():
    nodes = {"db1": {"unreachable": True}, "db2": replica()}
    with pytest.raises(t.TopologyError, match="failover"):
        t.decide(nodes, "db1")


def test_a_fenced_old_primary_does_not_count_as_primary():
    nodes = {"db1": stopped(fenced=True), "db2": replica()}
    with pytest.raises(t.TopologyError, match="failover"):
        t.decide(nodes, "db1")


def test_stopped_primary_is_started_when_it_is_the_only_candidate():
    nodes = {"db1": stopped(standby_signal=True), "db2": stopped()}
    result = t.decide(nodes, "db1")
    assert result["primary"] == "db2"
    assert result["actions"] == {"db1": "start", "db2": "start"}


def test_two_stopped_primaries_are_ambiguous():
    with pytest.raises(t.TopologyError, match="several stopped"):
        t.decide({"db1": stopped(), "db2": stopped()}, "db1")


def test_former_primary_rejoins_and_new_members_are_cloned():
    nodes = {"db1": stopped(fenced=True), "db2": primary(), "db3": EMPTY}
    result = t.decide(nodes, "db1")
    assert result["actions"] == {"db1": "rejoin", "db2": "primary", "db3": "clone"}
    assert "former primary" in result["reasons"]["db1"]


def test_stopped_replica_is_started_not_cloned():
    nodes = {"db1": primary(), "db2": stopped(standby_signal=True)}
    assert t.decide(nodes, "db1")["actions"]["db2"] == "start"


def test_foreign_data_is_cloned_only_when_allowed():
    nodes = {"db1": primary(), "db2": stopped(system_identifier=OTHER)}
    assert t.decide(nodes, "db1")["actions"]["db2"] == "clone"
    with pytest.raises(t.TopologyError, match="reclone_allowed"):
        t.decide(nodes, "db1", allow_reclone=False)


def test_running_node_of_another_cluster_is_an_error():
    nodes = {"db1": primary(), "db2": replica(system_identifier=OTHER)}
    with pytest.raises(t.TopologyError, match="another cluster"):
        t.decide(nodes, "db1")


def test_replica_whose_slot_lost_wal_is_cloned():
    slots = [{"name": "node_db2", "active": False, "wal_status": "lost"}]
    nodes = {"db1": primary(slots=slots), "db2": replica()}
    result = t.decide(nodes, "db1")
    assert result["actions"]["db2"] == "clone"
    assert "slot lost" in result["reasons"]["db2"]


def test_unreachable_replica_is_left_alone():
    nodes = {"db1": primary(), "db2": {"unreachable": True}}
    assert t.decide(nodes, "db1")["actions"]["db2"] == "unreachable"


def test_a_node_that_did_not_answer_never_looks_empty():
    # A failed connection (no report fields) must not start a first deployment.
    nodes = {"db1": {"failed": False, "msg": "container not running"}, "db2": EMPTY}
    with pytest.raises(t.TopologyError, match="could not be asked"):
        t.decide(nodes, "db1")


def test_streaming_lists_what_the_primary_reports():
    rows = [
        {"application_name": "db3", "state": "catchup"},
        {"application_name": "db2", "state": "streaming"},
    ]
    nodes = {"db1": primary(replicas=rows), "db2": replica(), "db3": replica()}
    assert t.decide(nodes, "db1")["streaming"] == ["db2"]


def test_failover_candidate_is_the_most_advanced_replica():
    nodes = {
        "db1": {"unreachable": True},
        "db2": replica(receive_lsn="0/5000000", replay_lsn="0/4000000"),
        "db3": replica(receive_lsn="0/5000100", replay_lsn="0/3000000"),
    }
    assert t.failover_candidate(nodes, exclude=["db1"]) == ("db3", "0/5000100")


def test_failover_candidate_ties_go_to_inventory_order():
    nodes = {"db2": replica(), "db3": replica()}
    assert t.failover_candidate(nodes, prefer=["db3", "db2"])[0] == "db3"


def test_failover_without_replicas_fails():
    with pytest.raises(t.TopologyError, match="no running replica"):
        t.failover_candidate({"db1": stopped(), "db2": EMPTY})
    with pytest.raises(t.TopologyError, match="no running replica"):
        t.failover_candidate({"db1": primary()}, exclude=[])
