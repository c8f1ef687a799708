#!/usr/bin/python3
# ruff: noqa: S603
"""webstack-pgbackrest: scheduled pgBackRest backups, backup metrics and restore drills.

Installed by the stackops.webstack `pgbackrest` role as /usr/local/sbin/webstack-pgbackrest:

    webstack-pgbackrest backup {full,diff,incr}   what the timers run on every database host
    webstack-pgbackrest metrics                   refresh the metrics from the repository
    webstack-pgbackrest drill [--scheduled] [--json]

`backup` runs on every member but only the current primary (pg_is_in_recovery()
is false) backs up; pgBackRest then copies the files from a replica when
backup-standby is on. Every run refreshes the node-exporter textfile metrics
from the repository itself, so all members report the same backup ages and a
failover changes nothing for the alerts.

`drill` restores the newest backup into a scratch directory, starts it on a
socket-only port with archiving off, runs verification queries, reports, stops
the instance and removes the directory.

Standard library only. Runs as root; pgBackRest, psql and pg_ctl run as the
cluster owner. Settings come from /etc/pgbackrest/webstack.json.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG_FILE = "/etc/pgbackrest/webstack.json"
METRICS_FILE = "webstack_backup_postgresql.prom"
DRILL_METRICS_FILE = "webstack_backup_restore_drill.prom"
KINDS = ("full", "diff", "incr")
# A backup of a higher level also satisfies the schedule of the lower levels.
SATISFIES = {"full": ("full",), "diff": ("full", "diff"), "incr": ("full", "diff", "incr")}
# Identical in every exporter of these metrics (node-exporter merges the files).
HELP = {
    "webstack_backup_last_success_timestamp_seconds": (
        "Unix time the newest successful backup of this kind finished."
    ),
    "webstack_backup_last_run_success": (
        "1 when the last scheduled backup run of this kind on this host succeeded, else 0."
    ),
    "webstack_backup_last_run_timestamp_seconds": (
        "Unix time the last scheduled backup run of this kind on this host ended."
    ),
    "webstack_backup_max_age_seconds": (
        "Age in seconds after which the newest backup of this kind is overdue."
    ),
    "webstack_backup_restore_drill_last_success_timestamp_seconds": (
        "Unix time the last restore drill on this host passed."
    ),
    "webstack_backup_restore_drill_last_run_success": (
        "1 when the last restore drill on this host passed, else 0."
    ),
    "webstack_backup_restore_drill_duration_seconds": (
        "Seconds the last restore drill on this host took."
    ),
}
_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{kind="(?P<kind>[a-z_]+)"\})? (?P<value>\S+)$')
_LAST_XACT = re.compile(r"last completed transaction was at log time (.+)$", re.MULTILINE)
# pg_controldata fields -> the settings a restored cluster needs at least.
_CONTROLDATA_SETTINGS = {
    "max_connections setting": "max_connections",
    "max_worker_processes setting": "max_worker_processes",
    "max_wal_senders setting": "max_wal_senders",
    "max_prepared_xacts setting": "max_prepared_transactions",
    "max_locks_per_xact setting": "max_locks_per_transaction",
}


class BackupError(RuntimeError):
    """A step failed; the message says which and why."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------- pure helpers
def newest_backups(info: list) -> dict[str, float]:
    """Stop time of the newest usable backup per metric kind, from `pgbackrest info` JSON.

    Backups that pgBackRest flags with errors (page checksum failures) do not count.
    """
    stanza = info[0] if info else {}
    newest: dict[str, float] = {}
    for backup in stanza.get("backup") or []:
        if backup.get("error"):
            continue
        stop = (backup.get("timestamp") or {}).get("stop")
        if not stop:
            continue
        for kind, accepted in SATISFIES.items():
            if backup.get("type") in accepted:
                key = f"postgresql_{kind}"
                newest[key] = max(newest.get(key, 0), float(stop))
    return newest


def latest_backup(info: list) -> dict | None:
    """The newest backup without errors, or None."""
    stanza = info[0] if info else {}
    usable = [b for b in stanza.get("backup") or [] if not b.get("error")]
    return usable[-1] if usable else None


def repo_status(info: list) -> tuple[int, str]:
    """(code, message) of the stanza; 0 ok, 1 missing stanza path, 2 no valid backups."""
    status = (info[0] if info else {}).get("status") or {}
    return int(status.get("code", 99)), str(status.get("message", "no stanza in the output"))


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """{metric name: {kind or "": value}} of a textfile written by this program."""
    found: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match:
            found.setdefault(match["name"], {})[match["kind"] or ""] = float(match["value"])
    return found


def render_metrics(samples: dict[str, dict[str, float]]) -> str:
    """Prometheus text format: HELP and TYPE once per metric, samples sorted by kind."""
    lines = []
    for name in sorted(samples):
        if not samples[name]:
            continue
        lines.append(f"# HELP {name} {HELP[name]}")
        lines.append(f"# TYPE {name} gauge")
        for kind, value in sorted(samples[name].items()):
            label = f'{{kind="{kind}"}}' if kind else ""
            number = int(value) if float(value).is_integer() else value
            lines.append(f"{name}{label} {number}")
    return "\n".join(lines) + "\n"


def merge_run(
    previous: dict[str, dict[str, float]],
    newest: dict[str, float] | None,
    kind: str | None,
    *,
    ok: bool,
    now: float,
    max_age: dict[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """The samples after one run: repository view (when known) plus this run's result.

    ``max_age`` ({full, diff, incr: seconds}) becomes webstack_backup_max_age_seconds,
    the threshold of the BackupTooOld alert for each kind (its schedule plus slack).
    """
    success = "webstack_backup_last_success_timestamp_seconds"
    samples = {name: dict(values) for name, values in previous.items()}
    if newest is not None:
        samples[success] = dict(newest)
    if max_age:
        samples["webstack_backup_max_age_seconds"] = {
            f"postgresql_{name}": float(seconds) for name, seconds in max_age.items()
        }
    if kind:
        samples.setdefault("webstack_backup_last_run_success", {})[kind] = 1.0 if ok else 0.0
        samples.setdefault("webstack_backup_last_run_timestamp_seconds", {})[kind] = float(int(now))
    return samples


def parse_controldata(text: str) -> dict[str, int]:
    """Settings the restored cluster needs (at least the primary's), from pg_controldata."""
    settings = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        name = _CONTROLDATA_SETTINGS.get(label.strip())
        if sep and name and value.strip().isdigit():
            settings[name] = int(value.strip())
    return settings


def drill_settings(base: Path, port: int, shared_buffers: str, control: dict[str, int]) -> dict:
    """postgresql.conf of the temporary instance: socket only, no archiving, no durability."""
    settings: dict[str, object] = {
        "port": port,
        "listen_addresses": "",
        "unix_socket_directories": str(base),
        "archive_mode": "off",
        "hot_standby": "off",
        "shared_buffers": shared_buffers,
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "shared_preload_libraries": "",
        "logging_collector": "off",
        "hba_file": str(base / "data" / "pg_hba.conf"),
        "ident_file": str(base / "data" / "pg_ident.conf"),
    }
    settings.update(control)
    return settings


def render_settings(settings: dict) -> str:
    lines = ["# Temporary restore drill instance (removed when the drill ends)."]
    for name, value in settings.items():
        escaped = str(value).replace("'", "''")
        lines.append(f"{name} = '{escaped}'")
    return "\n".join(lines) + "\n"


def check_result(query: dict, rc: int, output: str, error: str) -> dict:
    """Outcome of one verification query."""
    result = {
        "database": query.get("database", "postgres"),
        "sql": query["sql"],
        "output": output.strip(),
        "ok": rc == 0,
    }
    if rc != 0:
        result["error"] = error.strip()[-500:]
    elif "expect" in query and query["expect"] is not None:
        result["expect"] = str(query["expect"])
        result["ok"] = output.strip() == str(query["expect"]).strip()
    return result


def recovered_to(log_text: str) -> str | None:
    """Commit time of the last transaction the recovery replayed, from the server log."""
    found = _LAST_XACT.findall(log_text)
    return found[-1].strip() if found else None


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file so that readers (node-exporter) never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------- system access
class Cluster:
    """The local cluster and pgBackRest, run as the cluster owner."""

    def __init__(self, config: dict):
        self.config = config
        self.stanza = config["stanza"]
        self.bin_dir = Path(config["pg_bin_dir"])
        owner = pwd.getpwnam(config.get("pg_user", "postgres"))
        self.owner = owner
        self.switch_user = os.geteuid() == 0 and owner.pw_uid != 0

    def run(self, argv: list[str], timeout: float, capture: bool = True):
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.owner.pw_dir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PGCONNECT_TIMEOUT": "10",
        }
        kwargs: dict = {"env": env, "cwd": self.owner.pw_dir, "timeout": timeout, "text": True}
        if self.switch_user:
            kwargs.update(user=self.owner.pw_uid, group=self.owner.pw_gid, extra_groups=[])
        if capture:
            kwargs.update(capture_output=True)
        return subprocess.run(argv, check=False, **kwargs)

    def psql(self, sql: str, database: str = "postgres", socket_dir=None, port=None, timeout=60):
        return self.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(socket_dir or self.config["pg_socket_dir"]),
                "-p",
                str(port or self.config["pg_port"]),
                "-d",
                database,
                "-c",
                sql,
            ],
            timeout=timeout,
        )

    def in_recovery(self) -> bool | None:
        """True on a replica, False on the primary, None when the server does not answer."""
        result = self.psql("SELECT pg_is_in_recovery()", timeout=30)
        if result.returncode != 0:
            return None
        return result.stdout.strip() == "t"

    def pgbackrest(self, *args: str, timeout: float, capture: bool = True, console="warn"):
        argv = ["pgbackrest", f"--stanza={self.stanza}", f"--log-level-console={console}", *args]
        return self.run(argv, timeout=timeout, capture=capture)

    def info(self) -> list:
        result = self.pgbackrest("--output=json", "info", timeout=300)
        if result.returncode != 0:
            raise BackupError(f"pgbackrest info failed: {result.stderr.strip()[-500:]}")
        return json.loads(result.stdout)


@contextlib.contextmanager
def exclusive(lock_file: str):
    """Yield True when this process holds the lock, False when another run holds it."""
    Path(lock_file).parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- commands
def metrics_path(config: dict, name: str) -> Path:
    return Path(config["metrics_dir"]) / name


def read_metrics(path: Path) -> dict[str, dict[str, float]]:
    try:
        return parse_metrics(path.read_text())
    except FileNotFoundError:
        return {}


def run_backup(cluster: Cluster, kind: str) -> bool:
    """Back up when this host is the primary; True when the run did what it should."""
    state = cluster.in_recovery()
    if state is None:
        log("ERROR: PostgreSQL does not answer on this host; no backup was taken here")
        return False
    if state:
        log(f"this host is a replica: the primary takes the {kind} backup; metrics only")
        return True
    log(f"this host is the primary: starting a {kind} backup of stanza {cluster.stanza}")
    started = time.monotonic()
    result = cluster.pgbackrest(
        f"--type={kind}", "backup", timeout=7 * 86400, capture=False, console="info"
    )
    if result.returncode != 0:
        log(f"ERROR: pgbackrest backup --type={kind} failed with exit code {result.returncode}")
        return False
    log(f"{kind} backup finished in {time.monotonic() - started:.0f} s")
    return True


def command_backup(config: dict, kind: str | None) -> int:
    cluster = Cluster(config)
    path = metrics_path(config, METRICS_FILE)
    with exclusive(config["lock_file"]) as locked:
        ok = True
        recorded = kind
        if kind and not locked:
            # Neither a success nor a failure of this kind: its last run stays as it was.
            log("another backup run holds the lock; this run is skipped")
            recorded = None
        elif kind:
            ok = run_backup(cluster, kind)
        newest = None
        try:
            info = cluster.info()
            code, message = repo_status(info)
            if code not in (0, 2):
                raise BackupError(f"stanza {cluster.stanza}: {message} (status {code})")
            newest = newest_backups(info)
        except (BackupError, ValueError, subprocess.TimeoutExpired) as error:
            log(f"ERROR: cannot read the repository: {error}")
            ok = False
        samples = merge_run(
            read_metrics(path),
            newest,
            f"postgresql_{recorded}" if recorded else None,
            ok=ok,
            now=time.time(),
            max_age=config.get("max_age_seconds"),
        )
        write_atomic(path, render_metrics(samples))
    return 0 if ok else 1


class Drill:
    """Restore the newest backup into a scratch instance and check it."""

    def __init__(self, cluster: Cluster, config: dict):
        self.cluster = cluster
        self.settings = config["drill"]
        self.base = Path(self.settings["dir"])
        self.data = self.base / "data"
        self.port = int(self.settings["port"])
        self.report: dict = {
            "host": socket.gethostname(),
            "stanza": cluster.stanza,
            "target": self.settings["target"],
            "passed": False,
            "checks": [],
        }

    def pg_ctl(self, *args: str, timeout: float = 120):
        return self.cluster.run(
            [str(self.cluster.bin_dir / "pg_ctl"), "-D", str(self.data), *args], timeout
        )

    def stop_instance(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.pg_ctl("-m", "immediate", "-w", "-t", "60", "stop")

    def clean(self) -> None:
        self.stop_instance()
        shutil.rmtree(self.base, ignore_errors=True)

    def prepare(self, backup: dict) -> None:
        size = int((backup.get("info") or {}).get("size") or 0)
        self.clean()
        self.base.mkdir(mode=0o700, parents=True)
        os.chown(self.base, self.cluster.owner.pw_uid, self.cluster.owner.pw_gid)
        free = shutil.disk_usage(self.base).free
        needed = int(size * 1.2) + 256 * 1024 * 1024
        if free < needed:
            raise BackupError(
                f"{self.base} has {free // 2**20} MiB free; the restore needs about "
                f"{needed // 2**20} MiB (database {size // 2**20} MiB plus WAL)"
            )

    def restore(self, backup: dict) -> None:
        stanza = self.cluster.stanza
        restore_command = (
            f"pgbackrest --stanza={stanza} --pg1-path={self.data} --archive-async=n "
            f'--log-level-console=warn --log-level-file=off archive-get %f "%p"'
        )
        args = [
            f"--pg1-path={self.data}",
            f"--set={backup['label']}",
            "--archive-mode=off",
            f"--recovery-option=restore_command={restore_command}",
        ]
        if self.settings["target"] == "immediate":
            args += ["--type=immediate", "--target-action=promote"]
        started = time.monotonic()
        result = self.cluster.pgbackrest(*args, "restore", timeout=self.settings["timeout"])
        if result.returncode != 0:
            raise BackupError(f"pgbackrest restore failed: {result.stderr.strip()[-800:]}")
        self.report["restore_seconds"] = round(time.monotonic() - started, 1)

    def configure(self) -> None:
        control = self.cluster.run(
            [str(self.cluster.bin_dir / "pg_controldata"), str(self.data)], timeout=60
        )
        if control.returncode != 0:
            raise BackupError(f"pg_controldata failed: {control.stderr.strip()}")
        settings = drill_settings(
            self.base, self.port, self.settings["shared_buffers"], parse_controldata(control.stdout)
        )
        owner = self.cluster.owner
        for name, text in (
            ("postgresql.conf", render_settings(settings)),
            ("pg_hba.conf", f"local all {owner.pw_name} peer\n"),
            ("pg_ident.conf", ""),
        ):
            write_atomic(self.data / name, text, mode=0o600)
            os.chown(self.data / name, owner.pw_uid, owner.pw_gid)

    def start(self) -> None:
        # Command-line settings win over a postgresql.auto.conf restored from production.
        options = (
            f"-c port={self.port} -c listen_addresses= -c archive_mode=off "
            f"-c unix_socket_directories={self.base}"
        )
        # With hot_standby off the server reports "ready" only once recovery has
        # ended, so pg_ctl -w waits for the whole recovery.
        limit = int(self.settings["timeout"])
        started = time.monotonic()
        result = self.pg_ctl(
            "-l",
            str(self.base / "postgresql.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(limit),
            "start",
            timeout=limit + 60,
        )
        if result.returncode != 0:
            raise BackupError(
                f"the temporary instance did not finish recovery within {limit} s: "
                f"{self.log_tail()}"
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probe = self.cluster.psql(
                "SELECT pg_is_in_recovery()", socket_dir=self.base, port=self.port
            )
            if probe.returncode == 0 and probe.stdout.strip() == "f":
                self.report["recovery_seconds"] = round(time.monotonic() - started, 1)
                return
            time.sleep(1)
        raise BackupError(f"the temporary instance did not promote: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return " | ".join((self.base / "postgresql.log").read_text().splitlines()[-8:])
        except OSError:
            return "(no server log)"

    def verify(self) -> None:
        query = (
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"
        )
        listed = self.cluster.psql(query, socket_dir=self.base, port=self.port)
        if listed.returncode != 0:
            raise BackupError(f"cannot list the databases: {listed.stderr.strip()}")
        databases = listed.stdout.split()
        self.report["databases"] = databases
        checks = [
            {"database": db, "sql": "SELECT count(*) > 0 FROM pg_class", "expect": "t"}
            for db in databases
        ]
        checks += list(self.settings.get("queries") or [])
        for check in checks:
            result = self.cluster.psql(
                check["sql"],
                database=check.get("database", "postgres"),
                socket_dir=self.base,
                port=self.port,
            )
            self.report["checks"].append(
                check_result(check, result.returncode, result.stdout, result.stderr)
            )
        replayed = self.cluster.psql(
            "SELECT coalesce(pg_last_xact_replay_timestamp()::text, '')",
            socket_dir=self.base,
            port=self.port,
        )
        self.report["recovered_to"] = replayed.stdout.strip() or None
        if not self.report["recovered_to"]:
            with contextlib.suppress(OSError):
                self.report["recovered_to"] = recovered_to(
                    (self.base / "postgresql.log").read_text()
                )

    def run(self) -> dict:
        started = time.monotonic()
        try:
            info = self.cluster.info()
            backup = latest_backup(info)
            if backup is None:
                raise BackupError(f"stanza {self.cluster.stanza} has no usable backup")
            self.report["backup"] = {
                "label": backup["label"],
                "type": backup["type"],
                "stopped": backup["timestamp"]["stop"],
                "size_bytes": (backup.get("info") or {}).get("size"),
            }
            self.prepare(backup)
            log(f"drill: restoring backup {backup['label']} into {self.data}")
            self.restore(backup)
            self.configure()
            log(f"drill: starting the temporary instance on port {self.port} (socket only)")
            self.start()
            self.verify()
            self.report["passed"] = bool(self.report["checks"]) and all(
                check["ok"] for check in self.report["checks"]
            )
        except (BackupError, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as error:
            self.report["error"] = str(error)
        finally:
            try:
                self.clean()
                self.report["cleaned_up"] = not self.base.exists()
            except OSError as error:
                self.report["cleaned_up"] = False
                self.report.setdefault("error", f"cleanup failed: {error}")
            self.report["duration_seconds"] = round(time.monotonic() - started, 1)
        return self.report


def command_drill(config: dict, scheduled: bool, as_json: bool) -> int:
    cluster = Cluster(config)
    with exclusive(config["lock_file"] + ".drill") as locked:
        if not locked:
            log("another restore drill is running; this one is skipped")
            return 1
        if scheduled and not config["drill"].get("on_primary") and cluster.in_recovery() is False:
            log("this host is the primary and pgbackrest_drill_on_primary is false: skipped")
            return 0
        report = Drill(cluster, config).run()
    path = metrics_path(config, DRILL_METRICS_FILE)
    samples = read_metrics(path)
    now = float(int(time.time()))
    samples["webstack_backup_restore_drill_last_run_success"] = {
        "": 1.0 if report["passed"] else 0.0
    }
    samples["webstack_backup_restore_drill_duration_seconds"] = {"": report["duration_seconds"]}
    if report["passed"]:
        samples["webstack_backup_restore_drill_last_success_timestamp_seconds"] = {"": now}
    write_atomic(path, render_metrics(samples))
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        for check in report["checks"]:
            state = "ok  " if check["ok"] else "FAIL"
            log(f"drill check {state} [{check['database']}] {check['sql']}")
        verdict = "PASSED" if report["passed"] else "FAILED"
        log(f"drill {verdict}: {json.dumps(report, sort_keys=True)}")
    return 0 if report["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webstack-pgbackrest", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=CONFIG_FILE)
    commands = parser.add_subparsers(dest="command", required=True)
    backup = commands.add_parser("backup", help="back up when this host is the primary")
    backup.add_argument("kind", choices=KINDS)
    commands.add_parser("metrics", help="refresh the backup metrics from the repository")
    drill = commands.add_parser("drill", help="restore the newest backup into a scratch instance")
    drill.add_argument("--scheduled", action="store_true", help="run by the timer")
    drill.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    if args.command == "backup":
        return command_backup(config, args.kind)
    if args.command == "metrics":
        return command_backup(config, None)
    return command_drill(config, args.scheduled, args.json)


if __name__ == "__main__":
    sys.exit(main())
