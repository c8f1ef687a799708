"""Filter ``packages_missing``: does an apt task have anything to do?

Asking apt costs about a second per task and host even when every package is
installed (it opens its cache). ``playbooks/facts.yml`` reads the installed
packages once per run (``ansible.builtin.package_facts``) into the host
variable ``webstack_installed_packages``; install tasks then skip apt when
nothing is missing:

    - ansible.builtin.apt:
        name: "{{ __pkgs }}"
      when: __pkgs | stackops.webstack.packages_missing(webstack_installed_packages | default(none))

Without that list (a role run on its own) the filter says "missing", so apt
decides as before. The list is of the current run only: it is never read
from the fact cache, where it could be stale. Names with a version
(``name=1.2``), an architecture (``name:amd64``), a wildcard or a path are
always handed to apt.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

_SPECIAL = set("=*?[]/:")


def packages_missing(names, installed=None, state="present") -> bool:
    """True when apt must run: a package of ``names`` is absent (``state=present``)
    or still installed (``state=absent``), or when ``installed`` is unknown.

    ``installed`` maps installed package names to their versions (as
    playbooks/facts.yml builds it, or ``ansible_facts['packages']`` of
    ``ansible.builtin.package_facts``), or lists the names.
    """
    if isinstance(names, str):
        names = [names]
    if names is None or not isinstance(names, list | tuple):
        raise AnsibleFilterError(f"packages_missing: expected a list of names, got {names!r}")
    if state not in ("present", "absent"):
        raise AnsibleFilterError(f"packages_missing: state must be present or absent: {state!r}")
    if not names:
        return False
    if isinstance(installed, dict):
        known = {name for name, versions in installed.items() if versions}
    elif isinstance(installed, list | tuple | set | frozenset):
        known = {str(name) for name in installed}
    else:
        return True
    for item in names:
        name = str(item)
        if _SPECIAL & set(name):
            return True
        present = name in known
        if (state == "present") != present:
            return True
    return False


class FilterModule:
    """Package filters of stackops.webstack."""

    def filters(self):
        return {"packages_missing": packages_missing}
