"""Helpers for the testinfra tests of every molecule scenario.

Tests check the lab from outside a host: one container connects to another,
so each test asks for hosts by inventory name.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import time
from functools import cache
from pathlib import Path

import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner


def inventory() -> str:
    return os.environ["MOLECULE_INVENTORY_FILE"]


def container(name: str) -> str:
    """The Docker container of an inventory host name."""
    return AnsibleRunner.get_runner(inventory()).get_variables(name).get("ansible_host", name)


class LabHost:
    """testinfra host of one lab container.

    Commands, files, services ... go straight through ``docker exec`` (fast, and
    never logged on the host); ``.ansible()`` runs a module through Ansible and
    the scenario's inventory, as a play would.
    """

    def __init__(self, name: str):
        self.name = name
        self._ansible = testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory())
        self._docker = testinfra.get_host(f"docker://{container(name)}")

    @property
    def ansible(self):
        """testinfra's ansible module: ``host.ansible(module, args)``, ``.get_variables()``."""
        return self._ansible.ansible

    def __getattr__(self, attr):
        return getattr(self._docker, attr)


@cache
def host(name: str) -> LabHost:
    """testinfra host for an inventory host name of the running scenario."""
    return LabHost(name)


def hosts_in(group: str) -> list[str]:
    return sorted(AnsibleRunner.get_runner(inventory()).get_hosts(group))


@cache
def address(name: str) -> str:
    """The lab address of a host (fixed: a restarted container keeps it)."""
    facts = host(name).ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def role_variable(name: str, role: str, variable: str):
    """What host ``name`` sets a role variable to: the inventory's value, else the role default."""
    found = host(name).ansible.get_variables()
    if variable in found:
        return found[variable]
    defaults = Path(__file__).resolve().parents[2] / "roles" / role / "defaults" / "main.yml"
    return yaml.safe_load(defaults.read_text())[variable]


def duration_seconds(value) -> int:
    """A duration as fail2ban writes it (600, 10m, 1h, 1d12h) in seconds."""
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)\s*([smhdw]?)", str(value))
    assert parts, f"not a duration: {value!r}"
    return sum(int(number) * units[unit] for number, unit in parts)


def secret(name: str) -> str:
    """A secret the scenario generated on the control node (next to its inventory)."""
    return (Path(inventory()).parent / ".secrets" / name).read_text().strip()


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout:.0f} s (last value: {last!r})")


def tcp_probe(src, address: str, port: int, timeout: int = 3):
    """Try a TCP connection from host ``src``; returns the CommandResult (rc 0 = open)."""
    return src.run(f"nc -z -w {timeout} {address} {port}")


# A secret must never be part of a command line a test runs on a host: the
# process list shows it, and a command sent through Ansible's modules is
# logged to the host's journal, which the tests then search. These helpers
# keep secrets off the hosts' command lines.
_PATTERNS = "/root/.lab-secret-patterns"


def files_containing(h, secrets: list[str], paths: str, extra: str = "") -> list[str]:
    """Files under ``paths`` on host ``h`` that contain any of ``secrets``.

    The patterns reach the host as a file through the copy module, whose
    ``content`` is never logged, and are removed right after the search.
    """
    h.ansible(
        "ansible.builtin.copy",
        json.dumps({"content": "\n".join(secrets) + "\n", "dest": _PATTERNS, "mode": "0600"}),
        check=False,
        become=True,
    )
    try:
        found = h.run(f"grep -rlF -f {_PATTERNS} {paths} {extra}")
    finally:
        h.run(f"rm -f {_PATTERNS}")
    return found.stdout.split()


def journal_contains(h, secret: str) -> bool:
    """Whether the journal of host ``h`` holds ``secret`` (searched on the control node)."""
    return secret in h.check_output("journalctl --no-pager -o cat")


def promtool_rule_tests(name: str, workdir: Path):
    """Run the prometheus role's promtool rule tests on the lab host `name`
    (the control node has no promtool), with the rules rendered from the
    role's defaults by the unit tests' renderer. Returns the command result."""
    unit = Path(__file__).resolve().parents[2] / "tests" / "unit" / "test_prometheus_rules.py"
    spec = importlib.util.spec_from_file_location("prometheus_rule_tests", unit)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.render_rules(workdir)
    target = host(name)
    target.run("rm -rf /tmp/rule-tests && mkdir -p /tmp/rule-tests")
    for path in sorted(workdir.iterdir()):
        target.ansible(
            "copy", f"src={path} dest=/tmp/rule-tests/{path.name}", check=False, become=True
        )
    return target.run("cd /tmp/rule-tests && promtool test rules *.test.yml")
