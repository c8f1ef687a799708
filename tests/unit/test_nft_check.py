"""roles/firewall/files/webstack-nft-check: nft -c of the ruleset with one fragment replaced."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "firewall" / "files" / "webstack-nft-check"


@pytest.fixture
def checker():
    loader = importlib.machinery.SourceFileLoader("webstack_nft_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture
def ruleset(tmp_path):
    dropins = tmp_path / "nftables.d"
    dropins.mkdir()
    (dropins / "50-redis.nft").write_text("tcp dport 6379 accept\n")
    (dropins / "50-ssh.nft").write_text("tcp dport 22 accept\n")
    (dropins / "README").write_text("not a fragment\n")
    main = tmp_path / "nftables.conf"
    main.write_text(
        f'table inet webstack {{\n  chain input {{\n    include "{dropins}/*.nft"\n  }}\n}}\n'
    )
    return main, dropins


def fake_nft(seen, rc=0):
    def run(argv, check=False):
        checked = Path(argv[-1])
        text = checked.read_text()
        include_dir = Path(text.split('include "', 1)[1].split("/*.nft", 1)[0])
        seen["main"] = text
        seen["fragments"] = {p.name: p.read_text() for p in include_dir.glob("*.nft")}
        seen["argv"] = argv[:-1]
        return subprocess.CompletedProcess(argv, rc)

    return run


def test_the_candidate_replaces_its_fragment_and_nothing_on_disk_changes(
    checker, ruleset, tmp_path, monkeypatch
):
    main, dropins = ruleset
    candidate = tmp_path / "candidate"
    candidate.write_text("tcp dport 6380 accept\n")
    seen = {}
    monkeypatch.setattr(checker.subprocess, "run", fake_nft(seen))
    rc = checker.main([str(main), str(dropins / "50-redis.nft"), str(candidate)])
    assert rc == 0
    assert seen["argv"] == ["nft", "-c", "-f"]
    assert seen["fragments"] == {
        "50-redis.nft": "tcp dport 6380 accept\n",
        "50-ssh.nft": "tcp dport 22 accept\n",
    }
    assert str(dropins) not in seen["main"]
    assert (dropins / "50-redis.nft").read_text() == "tcp dport 6379 accept\n"


def test_a_new_fragment_is_added(checker, ruleset, tmp_path, monkeypatch):
    main, dropins = ruleset
    candidate = tmp_path / "candidate"
    candidate.write_text("tcp dport 9100 accept\n")
    seen = {}
    monkeypatch.setattr(checker.subprocess, "run", fake_nft(seen))
    assert checker.main([str(main), str(dropins / "50-node.nft"), str(candidate)]) == 0
    assert set(seen["fragments"]) == {"50-redis.nft", "50-ssh.nft", "50-node.nft"}
    assert not (dropins / "50-node.nft").exists()


def test_nft_refusing_the_ruleset_fails_the_check(checker, ruleset, tmp_path, monkeypatch):
    main, dropins = ruleset
    candidate = tmp_path / "candidate"
    candidate.write_text("this is not nft\n")
    monkeypatch.setattr(checker.subprocess, "run", fake_nft({}, rc=1))
    assert checker.main([str(main), str(dropins / "50-redis.nft"), str(candidate)]) == 1


def test_a_main_config_without_the_include_is_refused(checker, tmp_path):
    main = tmp_path / "nftables.conf"
    main.write_text("table inet webstack {}\n")
    candidate = tmp_path / "candidate"
    candidate.write_text("")
    assert checker.main([str(main), str(tmp_path / "50-x.nft"), str(candidate)]) == 2
    assert checker.main([]) == 2
