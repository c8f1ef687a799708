#!/usr/bin/env python3
"""Sentinel-aware write probe (molecule scenario `redis` and benchmarks/redis_failover.py).

Does what an application does after a failover: asks the Sentinels for the
master, connects to it as the app user and writes. Retries every
``--interval`` seconds until a write succeeds or ``--deadline`` seconds pass,
then prints one JSON line: seconds from ``--since`` (the moment the outage
began, epoch seconds; default: now) to the first successful write, the
master it landed on, and the number of attempts. The password comes from
the environment variable REDIS_PASSWORD, never from the command line.
Exit status 0 on success, 1 when the deadline passed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import redis
from redis.sentinel import Sentinel


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentinels", required=True, help="host:port,host:port,...")
    parser.add_argument("--master-name", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--since", type=float, help="epoch seconds the outage began")
    parser.add_argument("--not-master", default="", help="address the write must not land on")
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=0.5, help="socket timeout per attempt")
    parser.add_argument("--key", default="app:probe")
    return parser.parse_args(argv)


def attempt(args, sentinels, password):
    """One discovery and write; returns the master's address or raises redis.RedisError."""
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs={
            "username": args.user,
            "password": password,
            "socket_timeout": args.timeout,
            "socket_connect_timeout": args.timeout,
        },
    )
    host, port = sentinel.discover_master(args.master_name)
    if host == args.not_master:
        raise redis.RedisError(f"the Sentinels still name {host}")
    client = redis.Redis(
        host=host,
        port=port,
        username=args.user,
        password=password,
        socket_timeout=args.timeout,
        socket_connect_timeout=args.timeout,
    )
    try:
        client.set(args.key, f"{time.time():.3f}")
    finally:
        client.close()
    return f"{host}:{port}"


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    password = os.environ["REDIS_PASSWORD"]
    sentinels = []
    for item in args.sentinels.split(","):
        host, port = item.rsplit(":", 1)
        sentinels.append((host, int(port)))
    since = args.since if args.since is not None else time.time()
    stop = time.monotonic() + args.deadline
    attempts, last_error = 0, ""
    while time.monotonic() < stop:
        attempts += 1
        try:
            master = attempt(args, sentinels, password)
        except redis.RedisError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(args.interval)
            continue
        elapsed = time.time() - since
        print(
            json.dumps(
                {
                    "ok": True,
                    "elapsed": round(elapsed, 3),
                    "master": master,
                    "attempts": attempts,
                    "last_error": last_error,
                }
            )
        )
        return 0
    print(
        json.dumps(
            {
                "ok": False,
                "elapsed": None,
                "master": None,
                "attempts": attempts,
                "last_error": last_error,
            }
        )
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
