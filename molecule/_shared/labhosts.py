"""Helpers for the testinfra tests of every molecule scenario.

Tests check the lab from outside a host: one container connects to another,
so each test asks for hosts by inventory name.
"""

from __future__ import annotations

import os
import time
from functools import cache

import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner


def inventory() -> str:
    return os.environ["MOLECULE_INVENTORY_FILE"]


@cache
def host(name: str):
    """testinfra host for an inventory host name of the running scenario."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory())


def hosts_in(group: str) -> list[str]:
    return sorted(AnsibleRunner(inventory()).get_hosts(group))


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
