#!/usr/bin/python3
# ruff: noqa: S603
"""webstack-redis-backup: encrypted Redis RDB snapshots in S3.

Installed by the stackops.webstack `redis_backup` role as /usr/local/sbin/webstack-redis-backup:

    webstack-redis-backup run                   what the timer runs on every Redis host
    webstack-redis-backup list                  the snapshots in the bucket, newest last
    webstack-redis-backup fetch KEY|latest DEST download and decrypt a snapshot

`run` asks the local server for its role. One host uploads: the first online
replica of the master (sorted by address), so the fork of BGSAVE and the
upload never load the master; the master uploads only when no replica is
online (or when the source is set to master). Every host then reads the
newest snapshot in the bucket and writes the node-exporter textfile metric,
so the backup age is the same wherever it is read.

The snapshot is a fresh BGSAVE, streamed through gpg (AES-256, passphrase) to
S3. Snapshots older than the retention are deleted, the newest few are kept.
Settings (with secrets) come from /etc/webstack/redis-backup.json (mode 0600).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG_FILE = "/etc/webstack/redis-backup.json"
METRICS_FILE = "webstack_backup_redis.prom"
KIND = "redis_rdb"
# Identical to the HELP texts of the pgbackrest role's wrapper (node-exporter merges files).
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
}
RDB_MAGIC = (b"REDIS", b"VALKEY")
_REPLICA = re.compile(r"^slave\d+$")


class SnapshotError(RuntimeError):
    """A step failed; the message says which and why."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------- pure helpers
def parse_info(text: str) -> dict[str, str]:
    """INFO output -> {field: value}; section headers and blank lines are skipped."""
    fields = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key] = value
    return fields


def online_replicas(info: dict[str, str]) -> list[tuple[str, int]]:
    """(ip, port) of the replicas a master lists as online, sorted."""
    found = []
    for key, value in info.items():
        if not _REPLICA.match(key):
            continue
        attrs = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
        if attrs.get("state") == "online" and "ip" in attrs and "port" in attrs:
            found.append((attrs["ip"], int(attrs["port"])))
    return sorted(found)


def decide(
    local: dict[str, str],
    master: dict[str, str] | None,
    me: tuple[str, int],
    source: str = "replica",
) -> tuple[bool, str]:
    """(upload here?, why) from the local INFO replication and the master's."""
    if local.get("role") == "master":
        return _decide_on_master(local, source)
    return _decide_on_replica(local, master, me, source)


def _decide_on_master(local: dict[str, str], source: str) -> tuple[bool, str]:
    if source == "master":
        return True, "this host is the master and the source is the master"
    replicas = online_replicas(local)
    if not replicas:
        return True, "this host is the master and no replica is online"
    return False, f"the replica {replicas[0][0]}:{replicas[0][1]} uploads"


def _decide_on_replica(
    local: dict[str, str], master: dict[str, str] | None, me: tuple[str, int], source: str
) -> tuple[bool, str]:
    reason = None
    if source == "master":
        reason = "the master uploads"
    elif local.get("master_link_status") != "up":
        reason = "this replica's link to the master is down"
    elif master is None:
        reason = "the master does not answer"
    if reason:
        return False, reason
    replicas = online_replicas(master)
    if not replicas:
        return False, "the master lists no online replica (it uploads itself)"
    if replicas[0] == me:
        return True, "this host is the first online replica"
    return False, f"the replica {replicas[0][0]}:{replicas[0][1]} uploads"


def object_key(prefix: str, name: str, host: str, now: dt.datetime) -> str:
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return "/".join(part.strip("/") for part in (prefix, name, f"{stamp}-{host}.rdb.gpg") if part)


def expired(objects: list[dict], now: dt.datetime, days: int, keep: int) -> list[str]:
    """Keys older than ``days``, never touching the ``keep`` newest."""
    ordered = sorted(objects, key=lambda obj: obj["LastModified"], reverse=True)
    limit = now - dt.timedelta(days=days)
    return [obj["Key"] for obj in ordered[keep:] if obj["LastModified"] < limit]


def newest(objects: list[dict]) -> dict | None:
    return max(objects, key=lambda obj: obj["LastModified"]) if objects else None


def render_metrics(success: float | None, ok: bool | None, now: float) -> str:
    samples = {}
    if success is not None:
        samples["webstack_backup_last_success_timestamp_seconds"] = success
    if ok is not None:
        samples["webstack_backup_last_run_success"] = 1 if ok else 0
        samples["webstack_backup_last_run_timestamp_seconds"] = now
    lines = []
    for name in sorted(samples):
        lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge"]
        lines.append(f'{name}{{kind="{KIND}"}} {int(samples[name])}')
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def private_file(dest: str, owner: tuple[int, int] | None):
    """A new file for a decrypted snapshot: mode 0600, owned by ``owner``
    (uid, gid) when given, in place at ``dest`` only once the block succeeded.

    The umask would make a plain open() 0644: the dataset readable to every
    local user. A temporary file beside ``dest`` replaces it at the end, so
    neither an existing file nor a symbolic link at ``dest`` is written through.
    """
    path = Path(dest)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if owner is not None:
            with contextlib.suppress(PermissionError):  # not root: stays the caller's
                os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def snapshot_owner(config: dict) -> tuple[int, int] | None:
    """(uid, gid) of the server's data directory (redis or valkey), None when it is missing."""
    try:
        info = os.stat(Path(config["rdb_file"]).parent)
    except OSError:
        return None
    return info.st_uid, info.st_gid


# ------------------------------------------------------------- system access
class Redis:
    """redis-cli with the backup user's password in the environment, never on the command line."""

    def __init__(self, config: dict):
        self.config = config

    def call(self, *args: str, host: str | None = None, port: int | None = None) -> str:
        redis = self.config["redis"]
        argv = [
            redis["cli"],
            "--no-auth-warning",
            "-h",
            host or redis["host"],
            "-p",
            str(port or redis["port"]),
            "--user",
            redis["user"],
        ]
        if redis.get("tls"):
            argv.append("--tls")
            if redis.get("tls_ca_file"):
                argv += ["--cacert", redis["tls_ca_file"]]
        env = dict(os.environ, REDISCLI_AUTH=redis["password"])
        result = subprocess.run(
            [*argv, *args], capture_output=True, text=True, env=env, timeout=30, check=False
        )
        output = result.stdout.strip()
        if result.returncode != 0 or output.startswith(("ERR", "NOPERM", "WRONGPASS", "NOAUTH")):
            raise SnapshotError(f"redis {args[0]}: {(output or result.stderr.strip())[:300]}")
        return output

    def info(self, section: str, host=None, port=None) -> dict[str, str]:
        return parse_info(self.call("INFO", section, host=host, port=port))

    def snapshot(self, timeout: float) -> None:
        """A fresh BGSAVE (scheduled after a running AOF rewrite), waited for."""
        before = self.info("persistence")
        saves = int(before.get("rdb_saves", -1))
        last = int(before.get("rdb_last_save_time", 0))
        log(f"redis: {self.call('BGSAVE', 'SCHEDULE')}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.info("persistence")
            if now.get("rdb_bgsave_in_progress") == "1":
                continue
            done = (
                int(now.get("rdb_saves", -1)) > saves
                if saves >= 0
                else int(now.get("rdb_last_save_time", 0)) > last
            )
            if done:
                if now.get("rdb_last_bgsave_status") != "ok":
                    raise SnapshotError("BGSAVE failed (rdb_last_bgsave_status is not ok)")
                return
        raise SnapshotError(f"BGSAVE did not finish within {timeout:.0f} s")


def s3_client(config: dict):
    import boto3  # noqa: PLC0415 (only needed once the host runs a backup)
    from botocore.config import Config  # noqa: PLC0415

    s3 = config["s3"]
    return boto3.client(
        "s3",
        endpoint_url=f"https://{s3['endpoint']}:{s3['port']}",
        region_name=s3["region"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        verify=s3.get("ca_file") or True,
        config=Config(
            s3={"addressing_style": "path" if s3["uri_style"] == "path" else "virtual"},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
        ),
    )


def list_snapshots(client, config: dict) -> list[dict]:
    prefix = "/".join(p.strip("/") for p in (config["s3"]["prefix"], config["name"]) if p) + "/"
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=config["s3"]["bucket"], Prefix=prefix
    ):
        found += [obj for obj in page.get("Contents", []) if obj["Key"].endswith(".rdb.gpg")]
    return sorted(found, key=lambda obj: obj["LastModified"])


@contextlib.contextmanager
def gpg(config: dict, mode: str, stdin, stdout):
    """gpg --symmetric / --decrypt with the passphrase on a pipe and a throwaway home."""
    with tempfile.TemporaryDirectory(prefix="webstack-gpg-") as home:
        read_end, write_end = os.pipe()
        os.write(write_end, config["passphrase"].encode() + b"\n")
        os.close(write_end)
        argv = [
            "gpg",
            "--batch",
            "--quiet",
            "--no-tty",
            "--homedir",
            home,
            "--pinentry-mode",
            "loopback",
            "--passphrase-fd",
            str(read_end),
        ]
        if mode == "encrypt":
            argv += ["--symmetric", "--cipher-algo", "AES256", "--compress-algo", "none"]
        else:
            argv += ["--decrypt"]
        try:
            with subprocess.Popen(
                argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, pass_fds=(read_end,)
            ) as process:
                yield process
        finally:
            os.close(read_end)


def upload(config: dict, client, key: str) -> int:
    """Stream the RDB file through gpg into S3; returns the RDB size."""
    path = Path(config["rdb_file"])
    with path.open("rb", buffering=0) as rdb:  # unbuffered: gpg reads the same descriptor
        magic = rdb.read(6)
        if not magic.startswith(RDB_MAGIC):
            raise SnapshotError(f"{path} is not an RDB file (starts with {magic!r})")
        size = os.fstat(rdb.fileno()).st_size
        rdb.seek(0)
        with gpg(config, "encrypt", rdb, subprocess.PIPE) as process:
            client.upload_fileobj(
                process.stdout,
                config["s3"]["bucket"],
                key,
                ExtraArgs={
                    "Metadata": {"source-host": socket.gethostname(), "rdb-size": str(size)}
                },
            )
            error = process.stderr.read().decode(errors="replace")
        if process.returncode != 0:
            client.delete_object(Bucket=config["s3"]["bucket"], Key=key)
            raise SnapshotError(f"gpg failed: {error.strip()[:300]}")
    return size


def run(config: dict) -> int:
    redis = Redis(config)
    metrics = Path(config["metrics_dir"]) / METRICS_FILE
    me = (config["address"], int(config["redis"]["port"]))
    ok = True
    try:
        local = redis.info("replication")
        master = None
        if local.get("role") != "master" and local.get("master_host"):
            with contextlib.suppress(SnapshotError, subprocess.TimeoutExpired):
                master = redis.info(
                    "replication", host=local["master_host"], port=int(local["master_port"])
                )
        upload_here, why = decide(local, master, me, config.get("source", "replica"))
        log(f"{'uploading' if upload_here else 'not uploading'}: {why}")
        client = s3_client(config)
        if upload_here:
            redis.snapshot(float(config["bgsave_timeout"]))
            now = dt.datetime.now(dt.UTC)
            key = object_key(config["s3"]["prefix"], config["name"], socket.gethostname(), now)
            started = time.monotonic()
            size = upload(config, client, key)
            log(f"uploaded {key} ({size} bytes RDB) in {time.monotonic() - started:.1f} s")
            old = expired(
                list_snapshots(client, config),
                now,
                int(config["retention_days"]),
                int(config["retention_min_count"]),
            )
            for stale in old:
                client.delete_object(Bucket=config["s3"]["bucket"], Key=stale)
                log(f"deleted {stale} (older than {config['retention_days']} days)")
        latest = newest(list_snapshots(client, config))
        success = latest["LastModified"].timestamp() if latest else None
    # Any failure (Redis, gpg, S3, boto3) must reach the metric and the journal.
    except Exception as error:
        log(f"ERROR: {type(error).__name__}: {error}")
        ok = False
        previous = None
        with contextlib.suppress(OSError):
            match = re.search(
                r"^webstack_backup_last_success_timestamp_seconds\{[^}]*\} (\S+)$",
                metrics.read_text(),
                re.MULTILINE,
            )
            previous = float(match.group(1)) if match else None
        success = previous
    write_atomic(metrics, render_metrics(success, ok, int(time.time())))
    return 0 if ok else 1


def command_list(config: dict) -> int:
    for obj in list_snapshots(s3_client(config), config):
        print(f"{obj['LastModified'].isoformat()}  {obj['Size']:>12}  {obj['Key']}")
    return 0


def command_fetch(config: dict, key: str, dest: str) -> int:
    client = s3_client(config)
    if key == "latest":
        latest = newest(list_snapshots(client, config))
        if latest is None:
            raise SnapshotError("the bucket holds no snapshot")
        key = latest["Key"]
    with (
        private_file(dest, snapshot_owner(config)) as out,
        gpg(config, "decrypt", subprocess.PIPE, out) as process,
    ):
        try:
            client.download_fileobj(config["s3"]["bucket"], key, process.stdin)
        finally:
            process.stdin.close()
        error = process.stderr.read().decode(errors="replace")
        process.wait()
        if process.returncode != 0:
            raise SnapshotError(f"gpg could not decrypt {key}: {error.strip()[:300]}")
    log(f"{key} -> {dest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="webstack-redis-backup", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", default=CONFIG_FILE)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="snapshot and upload when this host is the chosen one")
    commands.add_parser("list", help="list the snapshots in the bucket")
    fetch = commands.add_parser("fetch", help="download and decrypt a snapshot")
    fetch.add_argument("key", help="object key, or latest")
    fetch.add_argument("dest", help="file to write the RDB to")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    if args.command == "list":
        return command_list(config)
    if args.command == "fetch":
        return command_fetch(config, args.key, args.dest)
    lock = Path(config.get("lock_file", "/run/lock/webstack-redis-backup.lock"))
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another snapshot run holds the lock; this run is skipped")
            return 0
        return run(config)


if __name__ == "__main__":
    sys.exit(main())
