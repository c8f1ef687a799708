"""After every drill: a machine in no inventory group reaches only SSH on
every host and HTTP(S) on the load balancers.

Every TCP port a lab host listens on (read with ss inside it; a port nobody
listens on is closed whatever the firewall says) is tried from a throwaway
container of the lab image on the lab's network, with an address that no
inventory group holds. The firewall drops what it does not allow, so a port
either connects or times out. (UDP is not scanned.)
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path

from labhosts import container, host, hosts_in
from sitelab import address

SCANNER = Path(__file__).resolve().parents[2] / "_shared" / "portscan.py"
IMAGE = "stackops-lab/debian:13"
NETWORKS = "{{range $name, $net := .NetworkSettings.Networks}}{{$name}}{{end}}"


def listening(name: str) -> list[int]:
    """TCP ports host ``name`` listens on, other than on loopback."""
    ports = set()
    for line in host(name).check_output("ss -Htln").splitlines():
        local = line.split()[3]
        where, _, port = local.rpartition(":")
        if not where.startswith(("127.", "[::1]")):
            ports.add(int(port))
    return sorted(ports)


@cache
def lab_network() -> str:
    """The Docker network of the lab (the one the first load balancer is on)."""
    lb = container(hosts_in("loadbalancers")[0])
    return subprocess.run(
        ["docker", "inspect", "-f", NETWORKS, lb], check=True, capture_output=True, text=True
    ).stdout.strip()


def scan(targets: dict[str, list[int]], timeout: float) -> tuple[str, dict[str, list[int]]]:
    """The scanner's address, and the ports of ``targets`` ({address: ports})
    that accept a connection from it."""
    run = subprocess.run(
        [
            "docker", "run", "--rm", "--network", lab_network(),
            "-v", f"{SCANNER}:/portscan.py:ro", "--entrypoint", "python3", IMAGE,
            "/portscan.py", json.dumps(targets), str(timeout),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    said = json.loads(run.stdout)
    return said["from"], said["found"]


def test_a_host_in_no_group_reaches_only_ssh_and_the_public_ports():
    names = hosts_in("all")
    ports = {name: listening(name) for name in names}
    # The services of the stack listen beyond SSH: the scan has something to find.
    assert sum(len(p) for p in ports.values()) > 4 * len(names), ports
    first, found = scan({address(name): ports[name] for name in names}, timeout=3)
    # A port that timed out may have lost its packets: ask the closed ones again.
    closed = {address(n): sorted(set(ports[n]) - set(found[address(n)])) for n in names}
    second, again = scan(closed, timeout=5)
    found = {a: sorted(set(found[a]) | set(again[a])) for a in found}
    # One connection to sshd per host is far from a ban, but a scan repeated by
    # hand would be banned: leave the lab as it was.
    for name in names:
        host(name).run(f"fail2ban-client unban {first} {second}")
    reached = {name: found[address(name)] for name in names}
    allowed = {name: [22, 80, 443] if name in hosts_in("loadbalancers") else [22] for name in names}
    assert reached == allowed, {"listening": ports, "reached": reached}
