"""tools/loadgen.py against a small app on loopback: rate, failures, acknowledged writes."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

LOADGEN = Path(__file__).resolve().parents[2] / "tools" / "loadgen.py"
sys.path.insert(0, str(LOADGEN.parent))

import loadgen  # noqa: E402 - tools/ is not a package


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    writes: ClassVar[list[str]] = []
    fail_reads = False
    # Close each connection after one answer without saying so (as a server
    # whose old worker exits after a graceful reload does).
    drop_kept_alive = False

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"{}"):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if App.drop_kept_alive:
            self.close_connection = True

    def do_GET(self):
        self.reply(503 if App.fail_reads else 200)

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        App.writes.append(json.loads(self.rfile.read(length))["id"])
        self.reply(201)


@pytest.fixture
def app():
    App.writes = []
    App.fail_reads = False
    App.drop_kept_alive = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def run(tmp_path, port, *extra):
    out = tmp_path / "out.json"
    cmd = [
        sys.executable,
        str(LOADGEN),
        "--url",
        f"http://127.0.0.1:{port}",
        "--out",
        str(out),
        "--rate",
        "80",
        "--max-seconds",
        "2",
        "--write-path",
        "/api/writes",
        *extra,
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    return json.loads(out.read_text())


def test_rate_and_acknowledged_writes(tmp_path, app):
    result = run(tmp_path, app.server_port)
    assert result["failed"] == 0
    assert 140 <= result["completed"] <= 170  # 80/s for 2 s
    assert sorted(result["acked_writes"]) == sorted(App.writes)
    assert len(App.writes) == result["completed"] // 2
    assert result["stopped_by"] == "max_seconds"


def test_failures_are_counted(tmp_path, app):
    App.fail_reads = True
    result = run(tmp_path, app.server_port)
    assert result["failed"] == result["completed"] - len(App.writes)
    assert result["failures"][0]["status"] == 503


def test_a_closed_kept_alive_connection_is_retried_once_not_failed(tmp_path, app):
    App.drop_kept_alive = True
    result = run(tmp_path, app.server_port, "--workers", "2")
    assert result["failed"] == 0, result["failures"][:3]
    assert result["retried_on_new_connection"] > 0
    assert sorted(result["acked_writes"]) == sorted(set(App.writes))


def test_stop_file_ends_the_run_early(tmp_path, app):
    stop = tmp_path / "stop"
    stop.write_text("")
    result = run(tmp_path, app.server_port, "--stop-file", str(stop), "--max-seconds", "30")
    assert result["duration_s"] < 2
    assert result["stopped_by"] == "stop_file"


def test_refuses_public_targets(tmp_path):
    cmd = [sys.executable, str(LOADGEN), "--url", "http://8.8.8.8", "--out", str(tmp_path / "x")]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode != 0
    assert "refusing non-lab target" in result.stderr


def test_longest_write_gap_counts_from_start_to_end():
    assert loadgen.longest_write_gap(100.0, 110.0, [101.0, 102.0, 108.0]) == 6.0
    # No write at all: the whole run is one gap.
    assert loadgen.longest_write_gap(100.0, 110.0, []) == 10.0
    # The gap before the first acknowledgement counts too.
    assert loadgen.longest_write_gap(100.0, 110.0, [107.0, 109.5]) == 7.0
