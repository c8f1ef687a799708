"""Filter stackops.webstack.packages_missing: when an apt task may be skipped."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.stackops.webstack.plugins.filter.packages import packages_missing

INSTALLED = {"nginx": "1.26.3-3", "curl": "8.14.1-2"}


def test_nothing_missing_means_no_apt_run():
    assert packages_missing(["nginx", "curl"], INSTALLED) is False


def test_one_missing_package_runs_apt():
    assert packages_missing(["nginx", "redis-server"], INSTALLED) is True


def test_unknown_package_list_always_runs_apt():
    assert packages_missing(["nginx"], None) is True
    assert packages_missing(["nginx"], "") is True


def test_names_with_versions_or_wildcards_go_to_apt():
    for name in ("nginx=1.26.3-3", "nginx*", "nginx:amd64", "./x.deb"):
        assert packages_missing([name], INSTALLED) is True


def test_absent_state_runs_apt_only_when_something_is_installed():
    assert packages_missing(["telnet", "ftp"], INSTALLED, "absent") is False
    assert packages_missing(["telnet", "curl"], INSTALLED, "absent") is True


def test_package_facts_format_and_plain_lists():
    facts = {"nginx": [{"version": "1.26"}], "gone": []}
    assert packages_missing(["nginx"], facts) is False
    assert packages_missing(["gone"], facts) is True
    assert packages_missing(["nginx"], ["nginx", "curl"]) is False


def test_a_single_name_and_an_empty_list():
    assert packages_missing("nginx", INSTALLED) is False
    assert packages_missing([], None) is False


def test_bad_input_is_an_error():
    with pytest.raises(AnsibleFilterError):
        packages_missing(42, INSTALLED)
    with pytest.raises(AnsibleFilterError):
        packages_missing(["nginx"], INSTALLED, "latest")
