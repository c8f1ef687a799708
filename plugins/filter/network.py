"""Filters that turn inventory groups into network addresses and firewall rules.

Every role that binds to a private address or allows peers through the
firewall or pg_hba asks these filters, so one rule decides what "the address
of a host" is: ``webstack_private_address`` when set, else ``ansible_host``
when it is an IP address, else the default IPv4 address from the host's facts.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.stackops.webstack.plugins.module_utils import addresses


def _wrap(func):
    def inner(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except addresses.AddressError as exc:
            raise AnsibleFilterError(f"{func.__name__}: {exc}") from exc

    inner.__name__ = func.__name__
    inner.__doc__ = func.__doc__
    return inner


class FilterModule:
    """Address filters of stackops.webstack."""

    def filters(self):
        return {
            name: _wrap(getattr(addresses, name))
            for name in (
                "host_address",
                "group_hosts",
                "group_addresses",
                "split_families",
                "address_in_networks",
                "nft_allow_rules",
            )
        }
