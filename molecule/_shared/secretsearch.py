"""Shared test: no generated secret is in any host's logs, process list or the run's output.

A scenario opts in with a one-line test module that runs after its drills:

    from secretsearch import test_no_secret_in_logs_processes_or_output  # noqa: F401

The secrets are what the scenario generated into its inventory's .secrets
directory (passwords, keys; of a PEM private key, one line of its body), each
also URL-encoded when that differs (connection strings carry it so). They are
looked for

- in every lab host's journal (`journalctl -o cat`), in every file under its
  /var/log (the binary journal aside: it is read as text above), in the
  command line of every process;
- in what Ansible printed during this run: the drills' playbook logs, and the
  scenario's whole output (converge, idempotence, every test's report) when
  `make test` (tools/run_scenarios.py) keeps it in the file named by
  STACKOPS_RUN_LOG; a scenario run by hand has only the drill logs.

Everything is read on the control node (`docker exec` output, a tar stream of
/var/log), so the search itself puts no secret on a host. A hit names the
secret, the host and the place, and shows the line with the secret masked.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path
from urllib.parse import quote

from labhosts import container, hosts_in, inventory

# Shorter values would match by chance; every generated secret is longer.
MIN_LENGTH = 12


def secrets() -> dict[str, set[str]]:
    """Secret name -> the strings that give it away."""
    found: dict[str, set[str]] = {}
    root = Path(inventory()).parent / ".secrets"
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix in (".pub", ".crt"):
            continue
        text = path.read_text(errors="replace").strip()
        name = str(path.relative_to(root))
        if "PRIVATE KEY-----" in text:
            body = [line for line in text.splitlines() if line and not line.startswith("-----")]
            # A middle line: the first lines of keys of one type look alike.
            needles = {body[len(body) // 2]} if body else set()
        else:
            needles = {text, quote(text, safe="")}
        needles = {n for n in needles if len(n) >= MIN_LENGTH}
        if needles:
            found[name] = needles
    return found


def _masked(line: str, table: dict[str, set[str]]) -> str:
    for name, needles in table.items():
        for needle in needles:
            line = line.replace(needle, f"<{name}>")
    return line.strip()[:300]


def _hits(text: str, where: str, table: dict[str, set[str]]) -> list[str]:
    """One entry per line of ``text`` that holds a secret."""
    if not any(needle in text for needles in table.values() for needle in needles):
        return []
    hits = []
    for line in text.splitlines():
        names = [name for name, needles in table.items() if any(n in line for n in needles)]
        if names:
            hits.append(f"{where}: {', '.join(names)}: {_masked(line, table)}")
    return hits


def _docker(name: str, *command: str) -> bytes:
    result = subprocess.run(
        ["docker", "exec", container(name), *command],
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"{name}: {' '.join(command)}: {result.stderr.decode()[-500:]}"
    return result.stdout


def host_hits(name: str, table: dict[str, set[str]]) -> tuple[list[str], int]:
    """Hits on one host, and how many bytes were searched there."""
    journal = _docker(name, "journalctl", "--no-pager", "-o", "cat").decode(errors="replace")
    processes = _docker(name, "ps", "-eww", "-o", "pid=,args=").decode(errors="replace")
    hits = _hits(journal, f"{name} journal", table) + _hits(processes, f"{name} ps", table)
    logs = _docker(name, "tar", "-C", "/var/log", "--exclude=./journal", "-cf", "-", ".")
    searched = len(journal) + len(processes) + len(logs)
    with tarfile.open(fileobj=io.BytesIO(logs)) as archive:
        for member in archive:
            if member.isfile():
                data = archive.extractfile(member).read().decode(errors="replace")
                hits += _hits(data, f"{name} /var/log/{member.name[2:]}", table)
    return hits, searched


def output_files() -> list[Path]:
    """What Ansible printed in this run that is kept in files: the drills'
    playbook logs, and under `make test` the scenario's whole output."""
    drill_logs = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "drill-logs"
    files = sorted(drill_logs.glob("*.log")) if drill_logs.is_dir() else []
    run_log = os.environ.get("STACKOPS_RUN_LOG")
    if run_log:
        assert Path(run_log).is_file(), f"the output of this run is not in {run_log}"
        assert Path(run_log).stat().st_size > 10_000, f"{run_log} holds almost nothing"
        files.append(Path(run_log))
    return files


def test_no_secret_in_logs_processes_or_output():
    table = secrets()
    assert len(table) >= 10, f"too few generated secrets to search for: {sorted(table)}"
    hits: list[str] = []
    for name in hosts_in("all"):
        found, searched = host_hits(name, table)
        assert searched > 10_000, f"{name}: almost nothing to search ({searched} bytes)"
        hits += found
    for path in output_files():
        hits += _hits(path.read_text(errors="replace"), path.name, table)
    assert hits == [], f"{len(hits)} lines give a secret away:\n" + "\n".join(hits[:40])
