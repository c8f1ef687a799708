"""The stackops.webstack.secret lookup: vault values win, otherwise generated once."""

import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
from ansible.errors import AnsibleLookupError
from ansible.plugins.loader import lookup_loader
from ansible_collections.stackops.webstack.plugins.lookup import secret


class FakeTemplar:
    def template(self, value):
        return value


def lookup(terms, variables, **kwargs):
    module = lookup_loader.get("stackops.webstack.secret")
    module._templar = FakeTemplar()
    return module.run(terms, variables=variables, **kwargs)


def test_generates_once_and_reads_back(tmp_path):
    first = lookup(["db_password"], {"inventory_dir": str(tmp_path)})
    second = lookup(["db_password"], {"inventory_dir": str(tmp_path)})
    assert first == second
    assert len(first[0]) == 32
    path = tmp_path / ".secrets" / "db_password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_vault_variable_wins(tmp_path):
    variables = {"inventory_dir": str(tmp_path), "vault_db_password": "from-the-vault"}
    assert lookup(["db_password"], variables) == ["from-the-vault"]
    assert not (tmp_path / ".secrets" / "db_password").exists()


def test_length_and_charset(tmp_path):
    value = lookup(["token"], {"inventory_dir": str(tmp_path)}, length=48)[0]
    assert len(value) == 48
    assert value.isalnum()
    with pytest.raises(AnsibleLookupError, match="at least 16"):
        lookup(["short"], {"inventory_dir": str(tmp_path)}, length=8)


def test_rejects_path_tricks(tmp_path):
    with pytest.raises(AnsibleLookupError, match="invalid secret name"):
        lookup(["../escape"], {"inventory_dir": str(tmp_path)})


def test_parallel_callers_agree(tmp_path):
    path = os.path.join(tmp_path, "s", "shared")
    with ThreadPoolExecutor(max_workers=8) as pool:
        values = set(pool.map(lambda _: secret.read_or_create(path, 32), range(32)))
    assert len(values) == 1
