"""Drills against a converged lab: playbooks run the way an operator runs them.

A drill breaks something on purpose (kills a host, deploys a bad release,
writes a bad config) and checks from outside that the stack handled it. Each
drill module of a scenario's tests:

- runs playbooks through :func:`playbook` (the scenario's inventory and
  ansible.cfg; a failure raises :class:`DrillFailed` naming the host and the
  task that failed),
- records what it measured with :func:`record` (seconds, failed requests,
  lost writes); the scenario's conftest prints every record at the end of the
  run (:func:`summary_lines`), and the records are kept in
  ``<ephemeral dir>/drills.json``,
- leaves the lab healthy for the next drill, and checks so itself.

Lab traffic only: the load generator (tools/loadgen.py) refuses anything but
loopback and private addresses and stops by itself after its time and
request limits.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "."))
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[2]))
# tools/run_scenarios.py sets STACKOPS_DRILL_RECORDS to print every scenario's
# records at the end of `make test`; a scenario run on its own keeps them here.
RECORDS = Path(os.environ.get("STACKOPS_DRILL_RECORDS") or EPHEMERAL / "drills.json")
# Failed tests, kept beside the records so that the very end of a run names
# them (CI may show only the last lines of a long run).
FAILURES = RECORDS.with_name(RECORDS.stem + ".failures.json")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<task>.*?)\]")
_FAILED = re.compile(r"^(?:fatal|failed): \[(?P<host>[^\]]+)\].*?=>\s*(?P<rest>.*)$")
_RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unr>\d+)\s+failed=(?P<failed>\d+)"
)


class DrillFailed(AssertionError):
    """A drill playbook failed; the message names the host and the task."""


@dataclass
class Run:
    returncode: int
    output: str
    seconds: float

    def recap(self) -> dict[str, dict[str, int]]:
        """The PLAY RECAP: host -> {ok, changed, unreachable, failed}."""
        found = {}
        for line in self.output.splitlines():
            m = _RECAP.match(line)
            if m:
                found[m.group("host")] = {
                    "ok": int(m.group("ok")),
                    "changed": int(m.group("changed")),
                    "unreachable": int(m.group("unr")),
                    "failed": int(m.group("failed")),
                }
        return found

    def changed_hosts(self) -> dict[str, int]:
        return {h: r["changed"] for h, r in self.recap().items() if r["changed"]}

    def changed_tasks(self) -> list[str]:
        """'task: host' for every changed result (what broke idempotence)."""
        found, task = [], "?"
        for line in self.output.splitlines():
            m = _TASK.match(line)
            if m:
                task = m.group("task")
            elif line.startswith("changed: ["):
                found.append(f"{task}: {line.split(']', 1)[0][10:]}")
        return found


def failures(output: str) -> list[str]:
    """'host X, task "Y": message' for every failed task in an ansible-playbook output."""
    found, task = [], "?"
    lines = output.splitlines()
    for number, line in enumerate(lines):
        m = _TASK.match(line)
        if m:
            task = m.group("task")
            continue
        m = _FAILED.match(line)
        if not m:
            continue
        rest = m.group("rest").strip()
        try:
            detail = json.loads(rest) if rest else {}
        except ValueError:
            detail = {"msg": rest}
        if not detail:
            # YAML result format: the keys follow on indented lines.
            for follow in lines[number + 1 : number + 60]:
                if not follow.startswith("    "):
                    break
                key, _, value = follow.strip().partition(": ")
                if key in ("msg", "stderr") and value and key not in detail:
                    detail[key] = value
        message = " / ".join(str(detail[k]) for k in ("msg", "stderr") if detail.get(k)) or rest
        found.append(f'host {m.group("host")}, task "{task}": {str(message)[:400]}')
    return found


def ansible_env() -> dict[str, str]:
    return dict(
        os.environ,
        ANSIBLE_CONFIG=str(EPHEMERAL / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
    )


def playbook(
    path: str | Path,
    *args: str,
    check: bool = True,
    timeout: int = 1800,
    env: dict[str, str] | None = None,
) -> Run:
    """ansible-playbook against the scenario's inventory; path relative to the project.

    ``env`` adds to (or overrides) the environment, e.g. another strategy.
    """
    target = Path(path)
    if not target.is_absolute():
        target = PROJECT / target
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(target), *args]
    started = time.monotonic()
    # One stream, in order: Ansible writes failures to stderr, and the failed
    # task is the last TASK header before them.
    result = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**ansible_env(), **(env or {})},
        check=False,
        timeout=timeout,
        cwd=PROJECT,
    )
    output = _ANSI.sub("", result.stdout)
    run = Run(result.returncode, output, time.monotonic() - started)
    log = EPHEMERAL / "drill-logs"
    log.mkdir(exist_ok=True)
    (log / f"{int(time.time())}-{target.stem}.log").write_text(" ".join(command) + "\n" + output)
    if check and run.returncode != 0:
        named = failures(output) or [output[-1500:]]
        raise DrillFailed(f"{target.name} failed (exit {run.returncode}): " + " | ".join(named[:5]))
    return run


def extra_vars(values: dict) -> list[str]:
    """-e arguments carrying ``values`` as JSON (types survive)."""
    return ["-e", json.dumps(values)]


def _append(path: Path, entry: dict) -> None:
    # Scenarios that run side by side (tools/run_scenarios.py a+b) share the file.
    with path.with_name(path.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = json.loads(path.read_text()) if path.exists() else []
        entries.append(entry)
        path.write_text(json.dumps(entries, indent=2) + "\n")


def record(drill: str, **figures) -> None:
    """Keep what a drill measured (shown in the summary at the end of the run)."""
    scenario = os.environ.get("MOLECULE_SCENARIO_NAME", "")
    _append(RECORDS, {"scenario": scenario, "drill": drill, **figures})


def failure_lines(text: str, limit: int = 6) -> list[str]:
    """The lines of a pytest failure that say what failed (its ``E`` lines)."""
    said = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    said = [line for line in said if line]
    if not said:
        said = [line.strip() for line in text.splitlines() if line.strip()][-3:]
    return [line if len(line) <= 400 else line[:400] + " ..." for line in said[:limit]]


def pytest_runtest_logreport(report) -> None:
    """pytest hook (imported by each scenario's conftest): keep every failed test."""
    if not report.failed:
        return
    _append(
        FAILURES,
        {
            "scenario": os.environ.get("MOLECULE_SCENARIO_NAME", ""),
            "test": report.nodeid,
            "when": report.when,
            "error": failure_lines(report.longreprtext),
        },
    )


def quiet_machine(timeout: float | None = None) -> float:
    """Wait until the scenarios running beside this one have finished.

    tools/run_scenarios.py sets STACKOPS_QUIET_AFTER to a file it writes when
    they are done. Drills call this before they load a lab or kill a host, so
    that what they measure is not another scenario's converge on the same
    cores. Returns the seconds waited; without the variable it returns at once.
    """
    marker = os.environ.get("STACKOPS_QUIET_AFTER")
    if not marker:
        return 0.0
    if timeout is None:
        timeout = float(os.environ.get("STACKOPS_QUIET_TIMEOUT", "2400"))
    started = time.monotonic()
    try:
        wait_for(Path(marker).exists, timeout=timeout, interval=5, what=marker)
    except AssertionError:
        print(f"drill: {marker} still missing after {timeout:.0f} s, going on", flush=True)
    waited = time.monotonic() - started
    if waited > 1:
        print(f"drill: waited {waited:.0f} s for the scenarios beside this one", flush=True)
    return waited


def summary_lines(path: Path | None = None, scenario: str | None = None) -> list[str]:
    """One line per recorded drill: scenario, drill and its figures."""
    path = path or RECORDS
    scenario = os.environ.get("MOLECULE_SCENARIO_NAME") if scenario is None else scenario
    if not path.exists():
        return []
    lines = []
    for entry in json.loads(path.read_text()):
        if scenario and entry.get("scenario") != scenario:
            continue
        figures = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("drill", "scenario"))
        lines.append(f"{entry.get('scenario', ''):<8} {entry['drill']:<44} {figures}")
    return lines


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout:.0f} s (last: {last!r})")


def docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def container(name: str) -> str:
    """Container name of an inventory host of the running scenario."""
    prefix = os.environ.get("MOLECULE_SCENARIO_NAME", "")
    return f"{prefix}-{name}" if prefix else name


def kill_host(name: str) -> None:
    """docker kill: no clean shutdown, the address stops answering (a dead machine)."""
    quiet_machine()
    docker("kill", container(name))


def start_host(name: str, timeout: int = 90, wait: bool = True) -> None:
    """docker start, then (unless told not to) wait until systemd says the machine is up."""
    docker("start", container(name))
    if wait:
        wait_until_booted(name, timeout=timeout)


def wait_until_booted(name: str, timeout: int = 90) -> None:
    """Wait until systemd on lab host ``name`` reports running (or degraded)."""

    def booted():
        state = subprocess.run(
            ["docker", "exec", container(name), "systemctl", "is-system-running"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return state in ("running", "degraded")

    wait_for(booted, timeout=timeout, interval=1, what=f"{name} booted")


def install_loadgen(name: str) -> None:
    """Copy tools/loadgen.py onto lab host ``name`` as /usr/local/bin/webstack-loadgen."""
    docker(
        "cp",
        str(PROJECT / "tools" / "loadgen.py"),
        f"{container(name)}:/usr/local/bin/webstack-loadgen",
    )


@contextmanager
def load(client, url_host: str, *, rate: float, max_seconds: int, writes: bool = True, **extra):
    """Bounded HTTPS load through the load balancer from lab host ``client`` while the block runs.

    ``client`` is a labhosts host (its ``.name`` is the inventory name). Yields
    a dict that holds the load generator's summary after the block (failed,
    completed, acked_writes, latencies ...).
    """
    quiet_machine()
    name = "webstack-drill-load"
    out = f"/var/tmp/{name}.json"  # noqa: S108 - a path on the lab host, not here
    stop = f"/var/tmp/{name}.stop"  # noqa: S108
    install_loadgen(client.name)
    client.run(f"systemctl stop {name} 2>/dev/null; rm -f {out} {stop}")
    argv = [
        "systemd-run",
        f"--unit={name}",
        "--collect",
        f"--property=RuntimeMaxSec={max_seconds + 120}",
        "/usr/bin/python3",
        "/usr/local/bin/webstack-loadgen",
        f"--url=https://{url_host}",
        f"--host-header={url_host}",
        "--insecure",
        f"--rate={rate}",
        "--workers=16",
        "--timeout=30",
        f"--max-seconds={max_seconds}",
        f"--max-requests={int(rate * max_seconds) + 10}",
        f"--stop-file={stop}",
        f"--out={out}",
    ]
    if writes:
        argv += ["--read-path=/api/writes?prefix=drill", "--write-path=/api/writes"]
    for key, value in extra.items():
        argv.append(f"--{key.replace('_', '-')}={value}")
    client.check_output(" ".join(argv))
    summary: dict = {}
    try:
        time.sleep(3)
        yield summary
    finally:
        client.run(f"touch {stop}")
        wait_for(
            lambda: client.run(f"test -s {out}").rc == 0, timeout=90, what="the load's summary"
        )
        summary.update(json.loads(client.check_output(f"cat {out}")))
