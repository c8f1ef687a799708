"""tools/lab/connection_plugins/lab_docker.py: read-only commands whose output
the docker API lost are run again; everything else runs once."""

import sys
from pathlib import Path

import pytest

sys.path.insert(
    0, str(Path(__file__).resolve().parents[2] / "tools" / "lab" / "connection_plugins")
)

import lab_docker


@pytest.fixture
def connection(monkeypatch):
    answers = []
    sent = []

    def exec_command(self, cmd, in_data=None, sudoable=False):
        sent.append((cmd, in_data))
        return answers.pop(0)

    monkeypatch.setattr(lab_docker.docker_api.Connection, "exec_command", exec_command)
    conn = object.__new__(lab_docker.Connection)
    monkeypatch.setattr(conn, "get_option", lambda name: "lab-host", raising=False)
    return conn, answers, sent


def test_the_id_of_a_file_transfer_is_asked_again_when_nothing_came_back(connection):
    conn, answers, sent = connection
    answers += [(0, b"", b""), (0, b"0\n0\n", b"")]
    assert conn.exec_command(b"id -u && id -g") == (0, b"0\n0\n", b"")
    assert len(sent) == 2
    assert all(data == b"" for _, data in sent), "always through the path with input"


def test_it_gives_up_after_three_more_tries(connection):
    conn, answers, sent = connection
    answers += [(0, b"", b"")] * 4
    assert conn.exec_command(b"id -u && id -g") == (0, b"", b"")
    assert len(sent) == 4


def test_other_commands_run_once_even_without_output(connection):
    conn, answers, sent = connection
    answers += [(0, b"", b"")]
    assert conn.exec_command(b"/bin/sh -c 'rm -f -r /tmp/x'") == (0, b"", b"")
    assert len(sent) == 1


def test_the_temporary_directory_command_is_repeated_with_mkdir_p(connection):
    conn, answers, sent = connection
    cmd = (
        '/bin/sh -c \'( umask 77 && mkdir -p "` echo ~/.ansible/tmp `" && '
        'mkdir "` echo ~/.ansible/tmp/ansible-tmp-1-2 `" && echo ansible-tmp-1-2="'
        "` echo ~/.ansible/tmp/ansible-tmp-1-2 `\" ) && sleep 0'"
    )
    answers += [(0, b"", b""), (0, b"ansible-tmp-1-2=/root/.ansible/tmp/ansible-tmp-1-2\n", b"")]
    rc, stdout, _ = conn.exec_command(cmd)
    assert rc == 0
    assert stdout.startswith(b"ansible-tmp-1-2=")
    assert 'mkdir -p "` echo ~/.ansible/tmp/ansible-tmp-1-2' in sent[1][0]
    # A module run with its input is never repeated.
    answers += [(0, b"", b"")]
    conn.exec_command(cmd, in_data=b"payload")
    assert len(sent) == 3
