"""Connection plugin ``lab_docker``: community.docker.docker_api, hardened for the lab.

Under load, docker_api now and then returned no output at all for a command
that ran (community.docker issue 644), always on its path for commands
without input (Ansible's temporary directory, the ``id -u`` of a file
transfer): the task then fails with "failed to resolve remote temporary
directory ... returned empty string" or "not enough values to unpack". The
path for commands with input (every pipelined module run) reads the stream
until the daemon reports its end, and never lost output here. So this plugin
sends every command through that path, with an empty input. Should the
temporary-directory command still come back empty, it is run once more with
``mkdir -p`` (the directory may exist from the run whose output was lost),
with a warning. The ``id -u && id -g`` of a file transfer lost its output
the same way with two scenarios converging side by side (both cores busy):
it is read-only and is run again the same way. Everything else is exactly
the docker_api connection.

Lab tooling only: inventories/lab and the molecule scenarios use it; real
hosts are reached over SSH.
"""

from __future__ import annotations

import re

from ansible.module_utils.common.text.converters import to_text
from ansible.utils.display import Display
from ansible_collections.community.docker.plugins.connection import docker_api

DOCUMENTATION = docker_api.DOCUMENTATION.replace("name: docker_api", "name: lab_docker", 1).replace(
    "short_description: Run tasks in docker containers",
    "short_description: Run tasks in the lab's docker containers (docker_api with a retry)",
    1,
)

display = Display()

# The command of ActionBase._make_tmp_path:
#   ( umask 77 && mkdir -p "..." && mkdir "<dir>" && echo <name>="..." )
_TMP_COMMAND = re.compile(r'mkdir "` echo (?P<dir>[^`]*ansible-tmp-[^`]*) `" && echo ansible-tmp-')
_ID_COMMAND = "id -u && id -g"
RETRIES = 3


class Connection(docker_api.Connection):
    """docker_api, with read-only commands repeated when their output is lost."""

    transport = "lab_docker"

    def exec_command(self, cmd, in_data=None, sudoable=False):
        had_input = in_data is not None
        result = super().exec_command(cmd, in_data=in_data if had_input else b"", sudoable=sudoable)
        if had_input:
            return result
        text = to_text(cmd, errors="surrogate_or_strict")
        if text == _ID_COMMAND:
            return self._again_when_silent(cmd, result, f"'{text}'", sudoable=sudoable)
        if _TMP_COMMAND.search(text):
            retry = _TMP_COMMAND.sub(
                lambda m: m.group(0).replace('mkdir "', 'mkdir -p "', 1), text, count=1
            )
            return self._again_when_silent(
                retry, result, "the temporary directory command", sudoable=sudoable
            )
        return result

    def _again_when_silent(self, retry, result, what, *, sudoable):
        """Run ``retry`` (with an empty input) while the command answered nothing at all."""
        rc, stdout, stderr = result
        for attempt in range(1, RETRIES + 1):
            if rc != 0 or stdout.strip():
                break
            display.warning(
                f"lab_docker: no output from {what} on "
                f"{self.get_option('remote_addr')}; running it again ({attempt}/{RETRIES})"
            )
            rc, stdout, stderr = super().exec_command(retry, in_data=b"", sudoable=sudoable)
        return rc, stdout, stderr
