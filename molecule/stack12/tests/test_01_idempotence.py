"""The converge (Ansible's linear strategy) again, with mitogen: changed=0 on every host."""

import os

from drill import playbook

MITOGEN = {
    "ANSIBLE_STRATEGY": "mitogen_linear",
    "STACKOPS_LAB_CONNECTION": "docker",
}


def test_a_second_converge_changes_nothing(monkeypatch):
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    for key, value in MITOGEN.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ANSIBLE_STRATEGY_PLUGINS", f"{project}/.cache/mitogen-strategy")
    run = playbook("molecule/stack12/converge.yml")
    assert run.changed_hosts() == {}, run.changed_tasks()
