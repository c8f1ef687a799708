#!/usr/bin/env python3
"""Redis benchmark: Sentinel failover time over several runs, then redis-benchmark.

Runs against the containers of the molecule scenario `redis` (converge it
first, holding the molecule lock for the whole measurement):

    flock /var/lock/stackops-molecule.lock sh -c '
      molecule converge -s redis &&
      python3 benchmarks/redis_failover.py --runs 5;
      molecule destroy -s redis'

Each run kills the current master's redis-server (SIGKILL, with systemd's
restart held back), then the Sentinel-aware probe on the client host
(molecule/redis/files/redis_probe.py, redis-py as the app user) retries
"ask the Sentinels, connect, SET" every 0.1 s; the figure is the time from the
kill to the first successful write. The old master is then started again and
must rejoin as a replica before the next run. Afterwards redis-benchmark runs
on the client host, as the app user, against the current master.

Everything is bounded: at most 10 runs, every wait has a deadline, and
redis-benchmark sends a fixed number of requests. Traffic stays inside the
scenario's Docker network.
"""

# ruff: noqa: S603, S607  (runs docker on the control node, like tools/)
from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "molecule" / "redis" / "files" / "redis_probe.py"
MASTER_NAME = "webstack"
PORT, SENTINEL_PORT = 6379, 26379
MAX_RUNS = 10
DROPIN = "/run/systemd/system/redis-server.service.d/zz-benchmark.conf"


def sh(container: str, command: str, env: dict | None = None, timeout: int = 120) -> str:
    argv = ["docker", "exec"]
    for key, value in (env or {}).items():
        argv += ["-e", f"{key}={value}"]
    argv += [container, "sh", "-c", command]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{container}: {command}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def ip_of(container: str) -> str:
    out = subprocess.run(
        [
            "docker",
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            container,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[0]


def find_secrets() -> Path:
    pattern = os.path.expanduser("~/.ansible/tmp/molecule.*.redis/inventory/.secrets")
    found = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not found:
        sys.exit("no secrets of the redis scenario found: run `molecule converge -s redis` first")
    return Path(found[-1])


class Lab:
    def __init__(self, args):
        self.prefix = args.prefix
        self.client = args.prefix + args.client
        self.hosts = {name: args.prefix + name for name in args.hosts.split(",")}
        self.ips = {name: ip_of(c) for name, c in self.hosts.items()}
        secrets = Path(args.secrets) if args.secrets else find_secrets()
        self.app_password = (secrets / "redis_app_password").read_text().strip()
        self.admin_password = (secrets / "redis_admin_password").read_text().strip()

    def name_of(self, ip: str) -> str:
        return next(name for name, addr in self.ips.items() if addr == ip)

    def cli(self, host: str, *args: str, port: int = PORT, user: str = "app") -> str:
        password = self.app_password if user == "app" else self.admin_password
        command = "redis-cli --no-auth-warning --user {} -h {} -p {} {}".format(
            user, self.ips[host], port, " ".join(shlex.quote(a) for a in args)
        )
        return sh(self.client, command, env={"REDISCLI_AUTH": password}, timeout=15)

    def sentinel_master(self) -> str | None:
        answers = set()
        for name in self.hosts:
            try:
                out = self.cli(
                    name, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME, port=SENTINEL_PORT
                )
            except RuntimeError:
                return None
            answers.add(out.split()[0] if out else "")
        return answers.pop() if len(answers) == 1 and "" not in answers else None

    def role(self, name: str) -> list[str]:
        return self.cli(name, "ROLE", user="admin").splitlines()

    def healthy(self) -> str | None:
        """Master address when every Sentinel agrees and every replica is linked to it."""
        master = self.sentinel_master()
        if not master:
            return None
        for name in self.hosts:
            if self.ips[name] == master:
                continue
            try:
                if self.role(name)[:4] != ["slave", master, str(PORT), "connected"]:
                    return None
            except RuntimeError:
                return None
        return master


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s")


def failover_run(lab: Lab, deadline: int) -> dict:
    master_ip = wait(lab.healthy, 90, "healthy cluster before the run")
    old = lab.name_of(master_ip)
    container = lab.hosts[old]
    sh(
        container,
        f"mkdir -p {os.path.dirname(DROPIN)} && printf '[Service]\\nRestart=no\\n' "
        f"> {DROPIN} && systemctl daemon-reload",
    )
    since = float(
        sh(container, "date +%s.%N && systemctl kill --signal=SIGKILL redis-server").split()[0]
    )
    sentinels = ",".join(f"{ip}:{SENTINEL_PORT}" for ip in lab.ips.values())
    try:
        out = sh(
            lab.client,
            f"redis-probe --sentinels {sentinels} --master-name {MASTER_NAME} --user app "
            f"--since {since:.3f} --not-master {master_ip} --deadline {deadline}",
            env={"REDIS_PASSWORD": lab.app_password},
            timeout=deadline + 15,
        )
        result = json.loads(out.splitlines()[-1])
    finally:
        sh(
            container,
            f"rm -f {DROPIN} && systemctl daemon-reload && "
            "systemctl reset-failed redis-server; systemctl start redis-server",
        )
    new_ip = result["master"].split(":")[0]
    rejoin_start = time.monotonic()
    wait(
        lambda: lab.role(old)[:4] == ["slave", new_ip, str(PORT), "connected"],
        90,
        f"{old} rejoining as a replica",
    )
    return {
        "old": old,
        "new": lab.name_of(new_ip),
        "seconds": result["elapsed"],
        "attempts": result["attempts"],
        "rejoin_seconds": round(time.monotonic() - rejoin_start, 1),
    }


def redis_benchmark(lab: Lab, requests: int, clients: int, pipeline: int) -> list[dict]:
    master = lab.name_of(wait(lab.healthy, 90, "healthy cluster before redis-benchmark"))
    value = "x" * 100
    rows = []
    for label, command in (
        ("SET app:<key> (100 B)", f"SET app:__rand_int__ {value}"),
        ("GET app:<key>", "GET app:__rand_int__"),
        ("INCR app:counter", "INCR app:counter"),
    ):
        out = sh(
            lab.client,
            f'redis-benchmark -h {lab.ips[master]} -p {PORT} --user app -a "$PW" '
            f"-n {requests} -c {clients} -P {pipeline} -r 100000 --csv {command}",
            env={"PW": lab.app_password},
            timeout=300,
        )
        reader = list(csv.DictReader(io.StringIO(out)))
        row = reader[-1]
        rows.append(
            {
                "test": label,
                "rps": float(row["rps"]),
                "p50_ms": float(row["p50_latency_ms"]),
                "p99_ms": float(row["p99_latency_ms"]),
            }
        )
    # The app user really is the app user: an admin command is refused.
    refused = sh(
        lab.client,
        f"redis-cli --no-auth-warning --user app -h {lab.ips[master]} FLUSHALL",
        env={"REDISCLI_AUTH": lab.app_password},
    )
    if "NOPERM" not in refused:
        raise RuntimeError(f"the app user was not refused FLUSHALL: {refused}")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help=f"failover runs (1-{MAX_RUNS})")
    parser.add_argument("--prefix", default="redis-", help="container name prefix (scenario name)")
    parser.add_argument("--hosts", default="redis1,redis2,redis3")
    parser.add_argument("--client", default="client")
    parser.add_argument("--secrets", help="directory with the generated secrets of the scenario")
    parser.add_argument("--probe-deadline", type=int, default=40)
    parser.add_argument("--requests", type=int, default=100000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--pipeline", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= MAX_RUNS:
        parser.error(f"--runs must be between 1 and {MAX_RUNS}")

    lab = Lab(args)
    subprocess.run(
        ["docker", "cp", str(PROBE), f"{lab.client}:/usr/local/bin/redis-probe"], check=True
    )
    sh(lab.client, "chmod 755 /usr/local/bin/redis-probe")
    versions = sh(lab.hosts[next(iter(lab.hosts))], "redis-server --version")
    runs = []
    for number in range(1, args.runs + 1):
        run = failover_run(lab, args.probe_deadline)
        runs.append(run)
        print(
            f"run {number}: {run['old']} -> {run['new']}: write after {run['seconds']:.2f} s "
            f"({run['attempts']} attempts); old master back as replica in "
            f"{run['rejoin_seconds']} s",
            flush=True,
        )
    seconds = [r["seconds"] for r in runs]
    bench = redis_benchmark(lab, args.requests, args.clients, args.pipeline)

    print("\n## Failover: kill -9 of the master's redis-server to the first successful write")
    print(
        f"runs {len(seconds)}, min {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s,"
        f" max {max(seconds):.2f} s (down-after-milliseconds 5000)"
    )
    print(
        "\n## redis-benchmark as the app user against the master "
        f"(-n {args.requests} -c {args.clients} -P {args.pipeline})"
    )
    print("| Test | Requests/s | p50 ms | p99 ms |\n|---|---|---|---|")
    for row in bench:
        print(f"| {row['test']} | {row['rps']:.0f} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} |")
    machine = f"{os.cpu_count()} cores, {platform.platform()}"
    print(f"\n{versions}\nmachine: {machine}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"runs": runs, "benchmark": bench, "server": versions, "machine": machine}, indent=2
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
