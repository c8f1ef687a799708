"""Lookup plugin ``stackops.webstack.secret``: vault value or a generated secret."""

from __future__ import annotations

DOCUMENTATION = r"""
name: secret
author: stackops.webstack maintainers
short_description: Secret from the vault, or generated once on the control node
description:
  - Returns the variable C(vault_<name>) when it is defined (normally from an
    ansible-vault encrypted C(vault.yml) of the inventory).
  - Otherwise returns the content of C(<secrets_dir>/<name>), creating that file
    with a random value the first time. C(secrets_dir) defaults to the
    C(.secrets) directory of the inventory the host comes from, which is
    git-ignored. Files are created with mode 0600 in a 0700 directory.
  - Creation is atomic, so parallel forks always agree on one value.
options:
  _terms:
    description: Secret names (letters, digits, C(_) and C(-)).
    required: true
  length:
    description: Length of a generated secret.
    type: int
    default: 32
  secrets_dir:
    description: Directory for generated secrets. Default C(<inventory_dir>/.secrets).
    type: path
"""

EXAMPLES = r"""
- name: Use the database password
  ansible.builtin.debug:
    msg: "{{ lookup('stackops.webstack.secret', 'postgresql_app_password') | length }}"
"""

RETURN = r"""
_raw:
  description: One secret per term.
  type: list
  elements: str
"""

import os
import re
import secrets
import string
import tempfile

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_ALPHABET = string.ascii_letters + string.digits


def generate(length: int) -> str:
    """Random secret made of letters and digits (safe in URLs, INI and YAML)."""
    if length < 16:
        raise AnsibleLookupError("secret: length must be at least 16")
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def read_or_create(path: str, length: int) -> str:
    """Return the secret stored at ``path``, creating it atomically when absent.

    The value is written to a private temporary file first and then linked
    into place, so a concurrent reader never sees an empty or partial file and
    exactly one writer wins.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".new-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(generate(length) + "\n")
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    with open(path) as handle:
        value = handle.read().strip()
    if not value:
        raise AnsibleLookupError(f"secret: {path} is empty; delete it to generate a new one")
    return value


class LookupModule(LookupBase):
    """Resolve secrets from vault variables or generate them."""

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        length = self.get_option("length")
        secrets_dir = self.get_option("secrets_dir")
        if not secrets_dir:
            inventory_dir = variables.get("inventory_dir")
            if not inventory_dir:
                raise AnsibleLookupError(
                    "secret: no inventory_dir for this host; pass secrets_dir=..."
                )
            secrets_dir = os.path.join(str(inventory_dir), ".secrets")
        results = []
        for term in terms:
            name = str(term)
            if not _NAME.match(name):
                raise AnsibleLookupError(f"secret: invalid secret name {name!r}")
            vault_name = f"vault_{name}"
            if vault_name in variables and variables[vault_name] not in (None, ""):
                results.append(self._templar.template(variables[vault_name]))
                continue
            results.append(read_or_create(os.path.join(secrets_dir, name), length))
        return results
