"""The converge (run with mitogen) again with Ansible's own strategy (linear)
and the lab_docker connection, the default path of users: changed=0 on every
host."""

from drill import playbook


def test_a_second_converge_changes_nothing(monkeypatch):
    monkeypatch.setenv("ANSIBLE_STRATEGY", "linear")
    monkeypatch.delenv("ANSIBLE_STRATEGY_PLUGINS", raising=False)
    # inventories: lab_docker unless STACKOPS_LAB_CONNECTION names another.
    monkeypatch.delenv("STACKOPS_LAB_CONNECTION", raising=False)
    run = playbook("molecule/stack12/converge.yml")
    assert run.changed_hosts() == {}, run.changed_tasks()
