"""Address resolution and nftables rule rendering (plugins/module_utils/addresses.py)."""

import pytest
from ansible_collections.stackops.webstack.plugins.module_utils import addresses as a

HOSTVARS = {
    "app1": {"ansible_default_ipv4": {"address": "10.0.1.11"}},
    "app2": {"ansible_host": "10.0.1.12", "ansible_default_ipv4": {"address": "192.0.2.1"}},
    "db1": {"webstack_private_address": "10.0.2.11", "ansible_host": "db1.example.net"},
    "lb1": {"ansible_host": "lb1.example.net"},
}
GROUPS = {"app": ["app1", "app2"], "postgresql": ["db1"], "empty": [], "lb": ["lb1"]}


def test_host_address_precedence():
    assert a.host_address("db1", HOSTVARS) == "10.0.2.11"  # explicit wins
    assert a.host_address("app2", HOSTVARS) == "10.0.1.12"  # IP ansible_host beats facts
    assert a.host_address("app1", HOSTVARS) == "10.0.1.11"  # facts last


def test_host_address_without_any_source_fails_clearly():
    with pytest.raises(a.AddressError, match="cannot tell the address of lb1"):
        a.host_address("lb1", HOSTVARS)
    with pytest.raises(a.AddressError, match="unknown host"):
        a.host_address("nope", HOSTVARS)


def test_explicit_address_must_be_an_ip():
    with pytest.raises(a.AddressError, match="not an IP"):
        a.host_address("x", {"x": {"webstack_private_address": "db.local"}})


def test_group_addresses_sorted_unique_and_excluding():
    assert a.group_addresses(["postgresql", "app", "app"], GROUPS, HOSTVARS) == [
        "10.0.1.11",
        "10.0.1.12",
        "10.0.2.11",
    ]
    assert a.group_addresses("app", GROUPS, HOSTVARS, exclude=["app1"]) == ["10.0.1.12"]
    assert a.group_addresses(["missing", "empty"], GROUPS, HOSTVARS) == []


def test_split_families_normalises():
    fam = a.split_families(["10.0.0.5/32", "10.1.2.3/16", "2001:db8::1", "10.0.0.5", "::/0"])
    assert fam == {"ip": ["10.0.0.5", "10.1.0.0/16"], "ip6": ["::/0", "2001:db8::1"]}
    with pytest.raises(a.AddressError):
        a.split_families(["not-an-address"])


def test_address_in_networks():
    assert a.address_in_networks("10.20.250.7", ["10.20.250.0/24"])
    assert not a.address_in_networks("10.20.251.7", ["10.20.250.0/24", "::/0"])
    assert a.address_in_networks("10.1.1.1", ["0.0.0.0/0"])
    assert not a.address_in_networks("", ["0.0.0.0/0"])


def render(rules, name="svc"):
    return a.nft_allow_rules(name, rules, GROUPS, HOSTVARS, "db1")


def test_rule_from_groups_and_cidrs():
    rule = {"ports": [5432, "6432"], "from_groups": ["app"], "from_cidrs": ["10.9.0.0/24"]}
    lines = render([rule])
    assert lines == [
        "ip saddr { 10.0.1.11, 10.0.1.12, 10.9.0.0/24 } tcp dport { 5432, 6432 } "
        'accept comment "svc tcp/5432,6432"'
    ]


def test_anywhere_rule_and_single_family_anywhere():
    both = render([{"ports": [443], "from_cidrs": ["0.0.0.0/0", "::/0"]}])
    assert both == ['tcp dport { 443 } accept comment "svc tcp/443"']
    v4 = render([{"ports": [80], "from_cidrs": ["0.0.0.0/0"]}])
    assert v4 == ['meta nfproto ipv4 tcp dport { 80 } accept comment "svc tcp/80"']


def test_empty_group_never_opens_a_port():
    lines = render([{"ports": [6379], "from_groups": ["empty"]}])
    assert len(lines) == 1
    assert lines[0].startswith("#")


def test_exclude_self_and_vrrp():
    lines = render([{"proto": "vrrp", "from_groups": ["postgresql", "app"], "exclude_self": True}])
    assert lines == ['ip saddr { 10.0.1.11, 10.0.1.12 } ip protocol vrrp accept comment "svc vrrp"']


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"ports": [0], "from_cidrs": ["10.0.0.0/8"]}, "invalid port"),
        ({"ports": ["70000"], "from_cidrs": ["10.0.0.0/8"]}, "invalid port"),
        ({"ports": ["90-80"], "from_cidrs": ["10.0.0.0/8"]}, "invalid port"),
        ({"ports": ["22; drop"], "from_cidrs": ["10.0.0.0/8"]}, "invalid port"),
        ({"proto": "sctp", "ports": [1], "from_cidrs": ["10.0.0.0/8"]}, "proto must be"),
        ({"proto": "tcp", "from_cidrs": ["10.0.0.0/8"]}, "needs ports"),
    ],
)
def test_bad_rules_are_rejected(rule, message):
    with pytest.raises(a.AddressError, match=message):
        render([rule])


def test_bad_name_and_comment_injection():
    with pytest.raises(a.AddressError, match="invalid rule set name"):
        render([], name="Bad Name")
    lines = render([{"ports": [1], "from_cidrs": ["10.0.0.0/8"], "comment": 'x" accept; drop "'}])
    assert lines[0].count('"') == 2
