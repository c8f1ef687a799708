"""molecule/_shared/drill.py: a failed drill names the host and the task."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "molecule" / "_shared"))

import drill

YAML_FAILURE = """\
TASK [stackops.webstack.postgresql : Create the data directory when it is missing] ***
ok: [db1]

TASK [stackops.webstack.postgresql : Empty the data directory] ***
[ERROR]: Task failed: Module failed: non-zero return code
fatal: [db2]: FAILED! =>
    changed: true
    msg: non-zero return code
    rc: 1
    stderr: 'find: no such directory'

PLAY RECAP *********
db1                        : ok=12   changed=0    unreachable=0    failed=0    skipped=3
db2                        : ok=10   changed=2    unreachable=0    failed=1    skipped=1
"""

JSON_FAILURE = """\
TASK [Check the request] ***
fatal: [lb1]: FAILED! => {"changed": false, "msg": "nginx rejected the new configuration"}
"""


def test_a_yaml_failure_names_host_task_and_message():
    (line,) = drill.failures(YAML_FAILURE)
    assert line.startswith(
        'host db2, task "stackops.webstack.postgresql : Empty the data directory"'
    )
    assert "non-zero return code" in line
    assert "no such directory" in line


def test_a_json_failure_is_read_too():
    assert drill.failures(JSON_FAILURE) == [
        'host lb1, task "Check the request": nginx rejected the new configuration'
    ]


def test_the_recap_and_the_changed_tasks():
    run = drill.Run(2, YAML_FAILURE, 1.0)
    assert run.recap()["db2"] == {"ok": 10, "changed": 2, "unreachable": 0, "failed": 1}
    assert run.changed_hosts() == {"db2": 2}
    assert drill.failures("PLAY RECAP\n") == []
