"""Address and firewall-rule helpers shared by the collection's plugins.

Pure functions, so they are unit tested without Ansible running.
"""

from __future__ import annotations

import ipaddress
import re


class AddressError(ValueError):
    """Raised for an address that cannot be resolved or parsed."""


ANYWHERE = {"0.0.0.0/0", "::/0"}
_PORT = re.compile(r"^\d{1,5}(-\d{1,5})?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PROTOCOLS = ("tcp", "udp", "vrrp")


def is_ip(value) -> bool:
    try:
        ipaddress.ip_address(str(value).strip())
    except ValueError:
        return False
    return True


def host_address(hostname, hostvars):
    """Private address of one host (see the filter plugin for the rules)."""
    try:
        hv = hostvars[hostname]
    except KeyError as exc:
        raise AddressError(f"unknown host {hostname!r}") from exc
    explicit = hv.get("webstack_private_address")
    if explicit:
        if not is_ip(explicit):
            raise AddressError(
                f"webstack_private_address of {hostname} is not an IP address: {explicit!r}"
            )
        return str(explicit).strip()
    ansible_host = hv.get("ansible_host")
    if ansible_host and is_ip(ansible_host):
        return str(ansible_host).strip()
    # ansible_facts works whether or not facts are also injected as ansible_* variables.
    facts = hv.get("ansible_facts") or {}
    facts_v4 = facts.get("default_ipv4") or hv.get("ansible_default_ipv4") or {}
    if facts_v4.get("address"):
        return str(facts_v4["address"])
    raise AddressError(
        f"cannot tell the address of {hostname}: set webstack_private_address or an IP "
        "ansible_host for it, or gather its facts in this run (a --limit that leaves it "
        "out needs the fact cache)"
    )


def sort_key(value):
    net = ipaddress.ip_network(str(value), strict=False)
    return (net.version, int(net.network_address), net.prefixlen)


def group_hosts(group_names, groups, exclude=None):
    """Hosts of the given groups, in inventory order, without duplicates."""
    if isinstance(group_names, str):
        group_names = [group_names]
    skip = set(exclude or [])
    hosts = []
    for group in group_names or []:
        for host in groups.get(group) or []:
            if host not in skip and host not in hosts:
                hosts.append(host)
    return hosts


def group_addresses(group_names, groups, hostvars, exclude=None):
    """Sorted unique private addresses of every host in the given groups."""
    hosts = group_hosts(group_names, groups, exclude)
    return sorted({host_address(h, hostvars) for h in hosts}, key=sort_key)


def normalise(source) -> tuple[int, str]:
    """(IP version, canonical text) of an address or CIDR."""
    try:
        net = ipaddress.ip_network(str(source).strip(), strict=False)
    except ValueError as exc:
        raise AddressError(f"not an address or CIDR: {source!r}") from exc
    text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
    return net.version, text


def split_families(sources):
    """{'ip': [...], 'ip6': [...]} of normalised, sorted, unique sources."""
    out = {"ip": [], "ip6": []}
    for source in sources or []:
        version, text = normalise(source)
        key = "ip" if version == 4 else "ip6"
        if text not in out[key]:
            out[key].append(text)
    for values in out.values():
        values.sort(key=sort_key)
    return out


def address_in_networks(address, networks) -> bool:
    try:
        ip = ipaddress.ip_address(str(address).strip())
    except ValueError:
        return False
    for raw in networks or []:
        net = ipaddress.ip_network(str(raw).strip(), strict=False)
        if ip.version == net.version and ip in net:
            return True
    return False


def _ports(rule) -> list[str]:
    ports = rule.get("ports")
    if ports is None and rule.get("port") is not None:
        ports = [rule["port"]]
    if isinstance(ports, (str, int)):
        ports = [ports]
    out = []
    for port in ports or []:
        text = str(port).strip()
        if not _PORT.match(text):
            raise AddressError(f"invalid port {port!r}")
        bounds = [int(p) for p in text.split("-")]
        if not all(1 <= p <= 65535 for p in bounds) or bounds != sorted(bounds):
            raise AddressError(f"invalid port {port!r}")
        out.append(text)
    return out


def _comment(text) -> str:
    clean = re.sub(r"[^A-Za-z0-9 _.,:/()+=-]", "", str(text))
    return clean[:120]


def nft_allow_rules(name, rules, groups, hostvars, inventory_hostname=None):
    """Render allow rules for the input chain of the webstack nftables table.

    Each rule is a mapping with ``ports`` (or ``port``), ``proto`` (tcp, udp or
    vrrp), ``from_groups`` (inventory groups) and ``from_cidrs``. A rule whose
    sources resolve to nothing renders as a comment, so an empty group never
    opens a port to everyone.
    """
    if not _NAME.match(str(name)):
        raise AddressError(f"invalid rule set name {name!r} (lower case, digits, _ and -)")
    lines = []
    for index, rule in enumerate(rules or []):
        proto = str(rule.get("proto", "tcp")).lower()
        if proto not in PROTOCOLS:
            raise AddressError(f"{name}[{index}]: proto must be one of {', '.join(PROTOCOLS)}")
        ports = _ports(rule)
        if proto != "vrrp" and not ports:
            raise AddressError(f"{name}[{index}]: a {proto} rule needs ports")
        sources = list(rule.get("from_cidrs") or [])
        groups_wanted = rule.get("from_groups") or []
        exclude = [inventory_hostname] if rule.get("exclude_self") else None
        sources += group_addresses(groups_wanted, groups, hostvars, exclude)
        fam = split_families(sources)
        what = f"{proto}/{','.join(ports)}" if ports else proto
        label = rule.get("comment") or name
        comment = _comment(f"{label} {what}")
        match = "ip protocol vrrp" if proto == "vrrp" else f"{proto} dport {{ {', '.join(ports)} }}"
        any4 = "0.0.0.0/0" in fam["ip"]
        any6 = "::/0" in fam["ip6"]
        if not fam["ip"] and not fam["ip6"]:
            origin = ",".join(groups_wanted) or "nobody"
            lines.append(f"# {comment}: no sources ({origin} resolved to no hosts)")
            continue
        if any4 and any6 and proto != "vrrp":
            lines.append(f'{match} accept comment "{comment}"')
            continue
        for family, is_any in (("ip", any4), ("ip6", any6)):
            addrs = fam[family]
            if not addrs or (family == "ip6" and proto == "vrrp"):
                continue
            if is_any:
                prefix = "meta nfproto ipv4" if family == "ip" else "meta nfproto ipv6"
            else:
                prefix = f"{family} saddr {{ {', '.join(addrs)} }}"
            lines.append(f'{prefix} {match} accept comment "{comment}"')
    return lines
