#!/usr/bin/env python3
"""Lab stand-in for an app server: answers every request with its host name.

GET /headers returns the request headers as JSON, GET /big (and any path
whose last part starts with "big") returns 20 KiB of text (for gzip), POST
returns the number of body bytes it read. It sets the headers a real app
might send, so the tests can see the load balancer replace them. HTTP/1.1
with keep-alive, like Next.js.
"""

from __future__ import annotations

import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lab-upstream/1.0"
    # Headers and body go out in separate writes; without TCP_NODELAY every
    # keepalive response waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def reply(self, body: str, content_type: str = "text/plain", status: int = 200) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Upstream", NAME)
        self.send_header("X-Powered-By", "lab-upstream")
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        if self.path.startswith("/_next/static/"):
            self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/headers"):
            self.reply(json.dumps(dict(self.headers.items())), "application/json")
        elif self.path.rsplit("/", 1)[-1].startswith("big"):
            self.reply((NAME + " lorem ipsum dolor sit amet\n") * 700)
        else:
            self.reply(NAME + "\n")

    def do_POST(self) -> None:
        remaining = int(self.headers.get("Content-Length", "0"))
        received = 0
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            received += len(chunk)
            remaining -= len(chunk)
        self.reply(f"{NAME} {received}\n")

    def log_message(self, format, *args):
        """Quiet: the load balancer's access log is what the tests read."""


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
