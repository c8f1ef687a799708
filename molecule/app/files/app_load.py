#!/usr/bin/env python3
"""Bounded request loop against the app hosts, for the molecule scenario `app`.

Sends GET requests round robin to every target (a new connection each time,
as a client behind no proxy would), at most --rate per second, until
--max-requests or --max-seconds is reached or SIGTERM arrives. Writes a JSON
summary to --out: requests, failures (with reasons), the release ids seen.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import time
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", required=True, help="host:port,host:port")
    parser.add_argument("--path", default="/api/health")
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--max-requests", type=int, default=5000)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    targets = [t.rsplit(":", 1) for t in args.targets.split(",") if t]
    if not targets:
        parser.error("--targets names no host:port")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))

    requests = failures = 0
    reasons: Counter[str] = Counter()
    releases: Counter[str] = Counter()
    per_target: Counter[str] = Counter()
    start = time.monotonic()
    interval = 1.0 / args.rate
    while (
        not stop["now"]
        and requests < args.max_requests
        and time.monotonic() - start < args.max_seconds
    ):
        host, port = targets[requests % len(targets)]
        sent = time.monotonic()
        requests += 1
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request("GET", args.path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if response.status != 200:
                failures += 1
                reasons[f"{host}: HTTP {response.status}"] += 1
            else:
                releases[json.loads(body).get("release", "?")] += 1
                per_target[host] += 1
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures += 1
            reasons[f"{host}: {type(exc).__name__}: {exc}"[:120]] += 1
        time.sleep(max(0.0, interval - (time.monotonic() - sent)))

    seconds = time.monotonic() - start
    summary = {
        "requests": requests,
        "failures": failures,
        "seconds": round(seconds, 1),
        "rate": round(requests / seconds, 1) if seconds else 0,
        "reasons": dict(reasons),
        "releases": dict(releases),
        "per_target": dict(per_target),
    }
    with open(args.out, "w") as handle:
        json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
