#!/usr/bin/env python3
"""Requests/s and latency through the nginx load balancer vs. directly to one app server.

Runs `hey` (Debian package) inside a lab container: against the load
balancer's own /healthz (what nginx and TLS cost without an app behind them),
against the site on the load balancer (HTTPS, HTTP/1.1 keepalive, spread over
every app server), then directly against one app server (plain HTTP on port
3000). All runs have the same bounded duration and concurrency.

    python3 benchmarks/nginx_bench.py                       # the molecule scenario `nginx`
    python3 benchmarks/nginx_bench.py --prefix "" --client mon1 --lb lb1 --name lb1 \
        --connections 500 --no-direct                    # make lab (3000 admits only the LB)

The client must be exempt from the load balancer's rate limit
(nginx_limit_allowlist_groups/cidrs); otherwise most answers are 429 and the
script stops with an error. It also stops when any answer is not 2xx.
Containers are reached with `docker exec`; test traffic stays inside the lab
network. The client's /etc/hosts gets an entry for the site name.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time

MAX_DURATION = 60


def docker(container: str, command: str, check: bool = True) -> str:
    docker_bin = shutil.which("docker") or "docker"
    proc = subprocess.run(  # noqa: S603
        [docker_bin, "exec", container, "sh", "-c", command],
        capture_output=True,
        text=True,
        check=False,
        timeout=MAX_DURATION * 3,
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"{container}: {command!r} failed: {proc.stderr.strip()}")
    return proc.stdout


def address(container: str, name: str) -> str:
    out = docker(container, f"getent hosts {name}").split()
    if not out:
        raise SystemExit(f"{container} cannot resolve {name}")
    return out[0]


def parse_hey(output: str) -> dict:
    """Requests/s, latency percentiles (ms) and status codes from hey's summary."""

    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        if not match:
            raise SystemExit(f"unexpected hey output:\n{output}")
        return float(match.group(1))

    percentiles = {
        int(p): float(s) * 1000
        for p, s in re.findall(r"^\s*(\d+)%+ in ([0-9.]+) secs", output, re.MULTILINE)
    }
    statuses = {
        int(code): int(count)
        for code, count in re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)
    }
    return {
        "requests_per_second": number(r"Requests/sec:\s+([0-9.]+)"),
        "average_ms": number(r"Average:\s+([0-9.]+) secs") * 1000,
        "p50_ms": percentiles.get(50),
        "p95_ms": percentiles.get(95),
        "p99_ms": percentiles.get(99),
        "status_codes": statuses,
        "errors": "Error distribution:" in output,
    }


def run_hey(client: str, args: str) -> dict:
    output = docker(client, f"hey {args}")
    result = parse_hey(output)
    bad = {code: n for code, n in result["status_codes"].items() if not 200 <= code < 300}
    if bad or result["errors"] or not result["status_codes"]:
        raise SystemExit(f"non-2xx answers or errors ({bad}); is the client allowlisted?\n{output}")
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="nginx-", help="container name prefix (scenario)")
    parser.add_argument("--client", default="client", help="host that runs hey")
    parser.add_argument("--lb", default="lb1", help="load balancer host")
    parser.add_argument("--upstream", default="app1", help="app server for the direct run")
    parser.add_argument("--name", default="shop.example.test", help="site name (Host and SNI)")
    parser.add_argument("--port", type=int, default=3000, help="app port")
    parser.add_argument("--path", default="/", help="request path")
    parser.add_argument(
        "--duration", type=int, default=15, help=f"seconds per run (<= {MAX_DURATION})"
    )
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--no-direct",
        action="store_true",
        help="skip the run straight to the app server (its port admits only the load balancers)",
    )
    opts = parser.parse_args(argv)
    if not 1 <= opts.duration <= MAX_DURATION:
        parser.error(f"--duration must be 1..{MAX_DURATION}")
    if not 1 <= opts.connections <= 1000:
        parser.error("--connections must be 1..1000")

    client = opts.prefix + opts.client
    docker(
        client,
        "command -v hey >/dev/null || { apt-get update -qq"
        " && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey; }",
    )
    lb_ip = address(client, opts.lb)
    app_ip = address(client, opts.upstream)
    # hey sends no SNI for an address, and the load balancer refuses TLS
    # without a known name: the client resolves the site name to the LB.
    docker(
        client,
        f"grep -v ' {opts.name}$' /etc/hosts > /etc/hosts.bench;"
        f" echo '{lb_ip} {opts.name}' >> /etc/hosts.bench;"
        " cat /etc/hosts.bench > /etc/hosts; rm /etc/hosts.bench",
    )
    common = f"-z {opts.duration}s -c {opts.connections}"
    runs = {
        "load balancer alone (HTTPS /healthz, answered by nginx)": (
            f"{common} https://{opts.name}/healthz"
        ),
        "through the load balancer (HTTPS)": f"{common} https://{opts.name}{opts.path}",
    }
    if not opts.no_direct:
        runs[f"directly to {opts.upstream}:{opts.port} (HTTP)"] = (
            f"{common} http://{app_ip}:{opts.port}{opts.path}"
        )
    results = {}
    for label, args in runs.items():
        print(f"running hey {args}", flush=True)
        started = time.monotonic()
        results[label] = {"command": f"hey {args}", **run_hey(client, args)}
        results[label]["wall_seconds"] = round(time.monotonic() - started, 1)

    hey_version = docker(client, "dpkg-query -W -f '${Version}' hey", check=False).strip()
    nginx_version = docker(opts.prefix + opts.lb, "nginx -v 2>&1", check=False).strip()
    meta = {
        "control_host": f"{platform.node()} {platform.system()} {platform.release()}",
        "client_container": client,
        "hey": hey_version,
        "nginx": nginx_version,
        "duration_s": opts.duration,
        "connections": opts.connections,
    }
    print(f"\n{meta}\n")
    print("| Target | Requests/s | Average | p50 | p95 | p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        print(
            f"| {label} | {r['requests_per_second']:.0f} | {r['average_ms']:.1f} ms"
            f" | {r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r['p99_ms']:.1f} ms |"
        )
    if opts.json:
        with open(opts.json, "w") as handle:
            json.dump({"meta": meta, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
