#!/usr/bin/env python3
"""Bounded load generator for the lab: a fixed request rate of reads and writes.

Used by the rolling upgrade test: it sends requests at a fixed rate through
the load balancer until a stop file appears or the time limit passes, records
every failure and the id of every write the app acknowledged, and writes a JSON
summary. Standard library only. Lab traffic only: it refuses targets that are
not loopback or private addresses.

    loadgen.py --url https://10.0.0.5 --rate 60 --max-seconds 900 \
        --stop-file /tmp/stop --out result.json --write-path /api/writes \
        --read-path /api/health
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import itertools
import json
import socket
import ssl
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.ok = 0
        self.failures: list[dict] = []
        self.acked_writes: list[str] = []
        self.acked_at: list[float] = []
        self.latencies: list[float] = []
        self.retried = 0
        self.issued = 0

    def next_number(self) -> int:
        """Number requests across all workers, so every Nth one is a write."""
        with self.lock:
            self.issued += 1
            return self.issued

    def record(
        self,
        ok: bool,
        latency: float,
        detail: dict | None,
        write_id: str | None,
        retried: bool = False,
    ):
        with self.lock:
            self.sent += 1
            self.retried += int(retried)
            self.latencies.append(latency)
            if ok:
                self.ok += 1
                if write_id:
                    self.acked_writes.append(write_id)
                    self.acked_at.append(time.time())
            else:
                self.failures.append(detail or {})


def check_target(host: str) -> None:
    """Refuse anything but loopback and private (lab) addresses."""
    for info in socket.getaddrinfo(host, None):
        addr = ipaddress.ip_address(info[4][0])
        if not (addr.is_loopback or addr.is_private):
            sys.exit(f"loadgen: refusing non-lab target {host} ({addr})")


class Worker(threading.Thread):
    def __init__(self, args, stats: Stats, tickets: threading.Semaphore, done: threading.Event):
        super().__init__(daemon=True)
        self.args, self.stats, self.tickets, self.done = args, stats, tickets, done
        self.url = urlsplit(args.url)
        self.conn = None

    def connect(self):
        port = self.url.port or (443 if self.url.scheme == "https" else 80)
        if self.url.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.args.cafile)
            if self.args.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(
                self.url.hostname, port, timeout=self.args.timeout, context=ctx
            )
        return http.client.HTTPConnection(self.url.hostname, port, timeout=self.args.timeout)

    def run(self):
        while True:
            self.tickets.acquire()
            if self.done.is_set():
                return
            try:
                self.one_request()
            except Exception as exc:  # a worker must never die uncounted
                self.stats.record(False, 0.0, {"error": f"loadgen bug: {exc!r}"}, None)

    def one_request(self):
        number = self.stats.next_number()
        is_write = self.args.write_path and number % self.args.write_every == 0
        write_id = str(uuid.uuid4()) if is_write else None
        headers = {"Host": self.args.host_header or self.url.hostname, "Connection": "keep-alive"}
        body = None
        if is_write:
            path, method = self.args.write_path, "POST"
            body = json.dumps({"id": write_id}).encode()
            headers["Content-Type"] = "application/json"
        else:
            path, method = self.args.read_path, "GET"
        start = time.monotonic()
        detail = None
        ok = False
        retried = False
        while True:
            reused = self.conn is not None
            try:
                if self.conn is None:
                    self.conn = self.connect()
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                ok = 200 <= resp.status < 300
                if not ok:
                    detail = {
                        "path": path,
                        "status": resp.status,
                        "body": payload[:200].decode("utf-8", "replace"),
                    }
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
            except (OSError, http.client.HTTPException) as exc:
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                # A kept-alive connection the server closed between two requests
                # (graceful reload, old worker exiting): the request never reached
                # the app, so it is sent once more on a new connection, as HTTP
                # clients do. Writes carry their id, so a repeat is harmless.
                if reused and not retried and stale_connection(exc):
                    retried = True
                    continue
                detail = {"path": path, "error": f"{type(exc).__name__}: {exc}"}
            break
        if detail is not None:
            detail["at"] = round(time.time(), 3)
        self.stats.record(ok, time.monotonic() - start, detail, write_id, retried)


def stale_connection(exc: Exception) -> bool:
    """The error of a request on a kept-alive connection the server had closed."""
    return isinstance(
        exc,
        (
            http.client.RemoteDisconnected,
            BrokenPipeError,
            ConnectionResetError,
            http.client.BadStatusLine,
        ),
    )


def longest_write_gap(started_at: float, ended_at: float, acked_at: list[float]) -> float:
    """The longest time without an acknowledged write (from the start to the end of the run)."""
    points = [started_at, *sorted(acked_at), ended_at]
    return max(b - a for a, b in itertools.pairwise(points))


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL, e.g. https://10.0.0.5")
    parser.add_argument("--host-header", default="")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="hard time limit")
    parser.add_argument("--max-requests", type=int, default=200_000, help="hard request limit")
    parser.add_argument("--stop-file", default="", help="stop when this file exists")
    parser.add_argument("--read-path", default="/api/health")
    parser.add_argument("--write-path", default="", help="POST {'id': uuid} here")
    parser.add_argument("--write-every", type=int, default=2, help="every Nth request writes")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--cafile", default=None)
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS (lab CA)")
    parser.add_argument("--out", required=True, help="JSON summary file")
    return parser.parse_args()


def issue_until_stopped(args: argparse.Namespace, tickets: threading.Semaphore) -> tuple[int, str]:
    """Release one ticket per due request until a limit or the stop file ends the run."""
    start = time.monotonic()
    issued = 0
    stop_file = Path(args.stop_file) if args.stop_file else None
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= args.max_seconds:
            return issued, "max_seconds"
        if issued >= args.max_requests:
            return issued, "max_requests"
        if stop_file is not None and stop_file.exists():
            return issued, "stop_file"
        due = int(elapsed * args.rate) + 1
        while issued < due and issued < args.max_requests:
            tickets.release()
            issued += 1
        time.sleep(min(0.01, 1.0 / args.rate))


def main() -> int:
    args = parse_args()
    check_target(urlsplit(args.url).hostname)

    stats = Stats()
    tickets = threading.Semaphore(0)
    done = threading.Event()
    workers = [Worker(args, stats, tickets, done) for _ in range(args.workers)]
    for worker in workers:
        worker.start()
    start = time.monotonic()
    started_at = time.time()
    issued, stopped_by = issue_until_stopped(args, tickets)
    done.set()
    for _ in workers:
        tickets.release()
    deadline = time.monotonic() + args.timeout + 2
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    duration = time.monotonic() - start
    with stats.lock:
        failed_at = [f["at"] for f in stats.failures if "at" in f]
        summary = {
            "started_at": round(started_at, 3),
            "duration_s": round(duration, 2),
            "stopped_by": stopped_by,
            "issued": issued,
            "completed": stats.sent,
            "ok": stats.ok,
            "failed": len(stats.failures),
            "retried_on_new_connection": stats.retried,
            "rate_per_s": round(stats.sent / duration, 2) if duration else 0.0,
            "p50_ms": round(percentile(stats.latencies, 0.50) * 1000, 1),
            "p95_ms": round(percentile(stats.latencies, 0.95) * 1000, 1),
            "p99_ms": round(percentile(stats.latencies, 0.99) * 1000, 1),
            "first_failure_at": min(failed_at) if failed_at else None,
            "last_failure_at": max(failed_at) if failed_at else None,
            "write_gap_max_s": (
                round(longest_write_gap(started_at, time.time(), stats.acked_at), 2)
                if args.write_path
                else None
            ),
            "failures": stats.failures[:200],
            "acked_writes": stats.acked_writes,
            # Wall-clock time of each acknowledgement (same order as acked_writes).
            "acked_at": [round(t, 3) for t in stats.acked_at],
        }
    Path(args.out).write_text(json.dumps(summary))
    printable = {
        k: v for k, v in summary.items() if k not in ("acked_writes", "acked_at", "failures")
    }
    print(json.dumps(printable))
    return 0


if __name__ == "__main__":
    sys.exit(main())
