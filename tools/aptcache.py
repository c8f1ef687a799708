#!/usr/bin/env python3
"""A small caching HTTP proxy for apt, shared by all lab containers.

apt takes a lock on its archive directory for a whole run, so containers
cannot share one bind-mounted cache; they share this proxy instead.
Package files (.deb, .udeb, source tarballs) are immutable by name and are
cached on disk; index files (Release, Packages, ...) always go to the
mirror. Only private-network clients and an allowlist of mirror hosts are
served, so this is never an open proxy.

    aptcache.py [--bind 0.0.0.0] [--port 3142] [--cache DIR]

Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

CACHEABLE = (".deb", ".udeb", ".dsc", ".tar.gz", ".tar.xz", ".tar.bz2", ".diff.gz")
DEFAULT_UPSTREAMS = "deb.debian.org,security.debian.org,httpredir.debian.org,ftp.debian.org"
CLIENT_NETWORKS = [
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128")
]
CHUNK = 1 << 16


class Cache:
    def __init__(self, root: Path, upstreams: set[str]):
        self.root = root
        self.upstreams = upstreams
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def path_for(self, host: str, path: str) -> Path:
        digest = hashlib.sha256(f"{host}{path}".encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}-{Path(path).name}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stackops-aptcache"
    cache: Cache

    def log_message(self, fmt, *args):  # one line per request on stderr
        sys.stderr.write(f"{self.client_address[0]} {fmt % args}\n")

    def _client_allowed(self) -> bool:
        addr = ipaddress.ip_address(self.client_address[0])
        return any(addr in net for net in CLIENT_NETWORKS if net.version == addr.version)

    def do_GET(self):
        if self.path == "/_health":
            self._reply_bytes(200, b"ok\n")
            return
        if not self._client_allowed():
            self._reply_bytes(403, b"clients from private networks only\n")
            return
        url = urlsplit(self.path)
        if url.scheme != "http" or url.hostname not in self.cache.upstreams:
            self._reply_bytes(403, f"upstream not allowed: {url.hostname}\n".encode())
            return
        if url.path.endswith(CACHEABLE):
            self._serve_cached(url.hostname, url.path, self.path)
        else:
            self._pass_through(self.path)

    def _reply_bytes(self, code: int, body: bytes):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _upstream(self, url: str, headers: dict[str, str] | None = None):
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - http allowlist
        return urllib.request.urlopen(request, timeout=60)  # noqa: S310

    def _pass_through(self, url: str):
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() in ("if-modified-since", "range", "if-range", "accept")
        }
        try:
            resp = self._upstream(url, headers)
        except urllib.error.HTTPError as err:
            body = err.read()
            self.send_response(err.code)
            for key in ("Last-Modified", "Content-Type"):
                if err.headers.get(key):
                    self.send_header(key, err.headers[key])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        except (urllib.error.URLError, TimeoutError) as err:
            self._reply_bytes(502, f"upstream error: {err}\n".encode())
            return
        with resp:
            self.send_response(resp.status)
            for key in ("Content-Type", "Last-Modified", "Content-Range", "ETag"):
                if resp.headers.get(key):
                    self.send_header(key, resp.headers[key])
            length = resp.headers.get("Content-Length")
            if length is None:
                data = resp.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("Content-Length", length)
            self.end_headers()
            shutil.copyfileobj(resp, self.wfile, CHUNK)

    def _serve_cached(self, host: str, path: str, url: str):
        target = self.cache.path_for(host, path)
        with self.cache.lock_for(str(target)):
            if not target.exists():
                try:
                    resp = self._upstream(url)
                except urllib.error.HTTPError as err:
                    self._reply_bytes(err.code, f"upstream: {err.reason}\n".encode())
                    return
                except (urllib.error.URLError, TimeoutError) as err:
                    self._reply_bytes(502, f"upstream error: {err}\n".encode())
                    return
                target.parent.mkdir(parents=True, exist_ok=True)
                with resp, tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                    shutil.copyfileobj(resp, tmp, CHUNK)
                    expected = resp.headers.get("Content-Length")
                if expected is not None and os.path.getsize(tmp.name) != int(expected):
                    os.unlink(tmp.name)
                    self._reply_bytes(502, b"short read from upstream\n")
                    return
                os.replace(tmp.name, target)
        size = target.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.debian.binary-package")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with target.open("rb") as handle:
            shutil.copyfileobj(handle, self.wfile, CHUNK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="0.0.0.0")  # noqa: S104 - clients are checked
    parser.add_argument("--port", type=int, default=3142)
    parser.add_argument("--cache", default="/var/cache/stackops-lab/aptcache")
    parser.add_argument(
        "--upstreams", default=os.environ.get("STACKOPS_APTCACHE_UPSTREAMS", DEFAULT_UPSTREAMS)
    )
    args = parser.parse_args()
    Handler.cache = Cache(Path(args.cache), {h.strip() for h in args.upstreams.split(",")})
    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
