"""tools/aptcache.py against a fake mirror on loopback."""

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import aptcache
import pytest


class Mirror(BaseHTTPRequestHandler):
    hits: ClassVar[dict[str, int]] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        Mirror.hits[self.path] = Mirror.hits.get(self.path, 0) + 1
        if self.path.endswith("missing.deb"):
            self.send_error(404)
            return
        body = f"content of {self.path} #{Mirror.hits[self.path]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def proxy(tmp_path):
    Mirror.hits = {}
    mirror = serve(Mirror)
    aptcache.Handler.cache = aptcache.Cache(tmp_path / "cache", {"127.0.0.1"})
    cache = serve(aptcache.Handler)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{cache.server_port}"})
    )
    yield opener, f"http://127.0.0.1:{mirror.server_port}"
    cache.shutdown()
    mirror.shutdown()


def get(opener, url):
    with opener.open(url, timeout=10) as resp:
        return resp.status, resp.read()


def test_packages_are_fetched_once(proxy):
    opener, mirror = proxy
    url = f"{mirror}/debian/pool/main/h/hello/hello_1.0_amd64.deb"
    first = get(opener, url)
    second = get(opener, url)
    assert first == second == (200, b"content of /debian/pool/main/h/hello/hello_1.0_amd64.deb #1")
    assert Mirror.hits["/debian/pool/main/h/hello/hello_1.0_amd64.deb"] == 1


def test_indexes_always_go_to_the_mirror(proxy):
    opener, mirror = proxy
    url = f"{mirror}/debian/dists/trixie/InRelease"
    assert get(opener, url)[1].endswith(b"#1")
    assert get(opener, url)[1].endswith(b"#2")


def test_upstream_errors_are_passed_on_and_not_cached(proxy):
    opener, mirror = proxy
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError) as err:
            get(opener, f"{mirror}/debian/pool/missing.deb")
        assert err.value.code == 404
    assert Mirror.hits["/debian/pool/missing.deb"] == 2


def test_only_allowlisted_mirrors(proxy):
    opener, _ = proxy
    with pytest.raises(urllib.error.HTTPError) as err:
        get(opener, "http://example.com/debian/pool/x.deb")
    assert err.value.code == 403


def test_cache_paths_do_not_collide(tmp_path):
    cache = aptcache.Cache(tmp_path, {"h"})
    a = cache.path_for("h", "/pool/a/x.deb")
    b = cache.path_for("h", "/pool/b/x.deb")
    assert a != b
    assert a.name.endswith("x.deb")
