"""The redis modules' protocol client and pure helpers (plugins/module_utils/redis_resp.py)."""

import io
import socket
import threading

import pytest
from ansible_collections.stackops.webstack.plugins.module_utils import redis_resp as r
from ansible_collections.stackops.webstack.plugins.modules import redis_settings as settings_mod
from ansible_collections.stackops.webstack.plugins.modules import redis_topology_info as info_mod

SECRET = "not-a-real-password"  # noqa: S105 (test value)


def test_encode_command():
    assert r.encode_command(["SET", "k", 1, True]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\nyes\r\n"
    )


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"+OK\r\n", "OK"),
        (b":42\r\n", 42),
        (b"$5\r\nhello\r\n", "hello"),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", ["a", [1]]),
        (b"$0\r\n\r\n", ""),
    ],
)
def test_read_reply(raw, value):
    assert r.read_reply(io.BytesIO(raw)) == value


def test_error_replies_are_values_and_truncation_is_an_error():
    err = r.read_reply(io.BytesIO(b"-NOPERM no\r\n"))
    assert isinstance(err, r.RespError)
    assert str(err) == "NOPERM no"
    with pytest.raises(r.RespConnectionError):
        r.read_reply(io.BytesIO(b"$5\r\nhel"))
    with pytest.raises(r.RespConnectionError):
        r.read_reply(io.BytesIO(b""))
    with pytest.raises(r.RespConnectionError):
        r.read_reply(io.BytesIO(b"?x\r\n"))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "yes"),
        (False, "no"),
        ("true", "yes"),
        (None, ""),
        ("", ""),
        (["10.0.0.1", "127.0.0.1"], "10.0.0.1 127.0.0.1"),
        ("3600 1 300 100", "3600 1 300 100"),
        ("128mb", str(128 * 1024 * 1024)),
        ("1GB", str(1024**3)),
        ("1g", str(1000**3)),
        ("64k", "64000"),
        (134217728, "134217728"),
        (5000.0, "5000"),
        ("allkeys-lru", "allkeys-lru"),
        ("everysec", "everysec"),
    ],
)
def test_normalize_value_matches_what_the_server_reports(value, text):
    assert r.normalize_value(value) == text


def test_changed_settings():
    current = {"maxmemory": "134217728", "appendonly": "yes", "save": ""}
    desired = {"maxmemory": "128mb", "appendonly": True, "save": "3600 1", "hz": 10}
    assert r.changed_settings(current, desired) == {"save": ("", "3600 1"), "hz": (None, "10")}


def test_diff_text_masks_secrets():
    text = r.diff_text({"masterauth": "s3cret", "maxmemory": "1", "auth-pass": None})
    assert "s3cret" not in text
    assert text == "auth-pass (unset)\nmasterauth ********\nmaxmemory 1\n"


@pytest.mark.parametrize(
    ("line", "args"),
    [
        ("sentinel auth-pass webstack abc", ["sentinel", "auth-pass", "webstack", "abc"]),
        ('sentinel auth-pass webstack "a b\\"c"', ["sentinel", "auth-pass", "webstack", 'a b"c']),
        ('x "\\x41\\n"', ["x", "A\n"]),
        ("x 'it\\'s'", ["x", "it's"]),
        ('save ""', ["save", ""]),
        ("   ", []),
    ],
)
def test_split_config_args(line, args):
    assert r.split_config_args(line) == args


@pytest.mark.parametrize("line", ['x "open', "x 'open", 'x "a"b'])
def test_split_config_args_rejects_bad_quoting(line):
    with pytest.raises(ValueError, match="quote"):
        r.split_config_args(line)


def test_sentinel_file_settings():
    text = "\n".join(
        [
            "# comment",
            "sentinel monitor webstack 10.0.0.1 6379 2",
            "sentinel auth-user webstack sentinel",
            'sentinel auth-pass webstack "p w"',
            "sentinel auth-pass other nope",
            'sentinel broken "line',
        ]
    )
    assert r.sentinel_file_settings(text, "webstack") == {
        "auth-user": "sentinel",
        "auth-pass": "p w",
    }


def test_parse_role():
    assert r.parse_role(["master", 10, [["10.0.0.2", "6379", "9"]]]) == {
        "role": "master",
        "offset": 10,
        "replicas": [{"ip": "10.0.0.2", "port": 6379, "offset": 9}],
    }
    assert r.parse_role(["slave", "10.0.0.1", 6379, "connected", 7]) == {
        "role": "replica",
        "master_host": "10.0.0.1",
        "master_port": 6379,
        "link_status": "connected",
        "offset": 7,
    }
    assert r.parse_role(["sentinel", ["webstack"]])["masters"] == ["webstack"]
    assert r.parse_role([]) == {"role": None}


def test_pairs_to_dict():
    assert r.pairs_to_dict(["a", "1", "b", "2"]) == {"a": "1", "b": "2"}
    with pytest.raises(ValueError, match="odd"):
        r.pairs_to_dict(["a"])


# ------------------------------------------------- against a tiny fake server


class FakeServer:
    """Answers RESP commands from a dict of handlers on a loopback socket."""

    def __init__(self, handler):
        self.handler = handler
        self.seen = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.sock.accept()
        stream = conn.makefile("rb")
        try:
            while True:
                command = r.read_reply(stream)
                self.seen.append(command)
                conn.sendall(self.handler(command))
        except r.RespConnectionError:
            pass
        finally:
            conn.close()
            self.sock.close()


def bulk(*items):
    out = b"*%d\r\n" % len(items)
    for item in items:
        out += b"$%d\r\n%s\r\n" % (len(item), item.encode())
    return out


def test_client_authenticates_with_user_and_password():
    server = FakeServer(lambda c: b"+OK\r\n" if c[0] == "AUTH" else b"+PONG\r\n")
    with r.RespClient(port=server.port, username="admin", password=SECRET) as client:
        assert client.command("PING") == "PONG"
    assert server.seen[0] == ["AUTH", "admin", SECRET]


def test_client_raises_error_replies():
    server = FakeServer(lambda c: b"-WRONGPASS invalid\r\n")
    with pytest.raises(r.RespError, match="WRONGPASS"):
        r.RespClient(port=server.port, username="admin", password=SECRET).connect()


def test_client_reports_unreachable_servers():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(r.RespConnectionError):
        r.RespClient(port=port, timeout=1).connect()


def params(**kwargs):
    base = {
        "mode": "server",
        "settings": {},
        "master_name": None,
        "master_settings": {},
        "sentinel_config_file": None,
        "rewrite": True,
    }
    return {**base, **kwargs}


def test_server_mode_sets_only_differences_and_rewrites():
    def handler(command):
        if command[:2] == ["CONFIG", "GET"]:
            return bulk("maxmemory", "134217728", "appendonly", "no")
        return b"+OK\r\n"

    server = FakeServer(handler)
    with r.RespClient(port=server.port) as client:
        wanted = {"maxmemory": "128mb", "appendonly": True}
        changes, rewritten = settings_mod.apply(client, params(settings=wanted), False)
    assert changes == {"appendonly": ("no", "yes")}
    assert rewritten
    assert server.seen[1:] == [["CONFIG", "SET", "appendonly", "yes"], ["CONFIG", "REWRITE"]]


def test_server_mode_check_mode_changes_nothing():
    server = FakeServer(lambda c: bulk("maxmemory", "0"))
    with r.RespClient(port=server.port) as client:
        changes, rewritten = settings_mod.apply(client, params(settings={"maxmemory": 1}), True)
    assert changes == {"maxmemory": ("0", "1")}
    assert not rewritten
    assert [c[:2] for c in server.seen] == [["CONFIG", "GET"]]


def test_sentinel_mode_reads_auth_from_the_file(tmp_path):
    conf = tmp_path / "sentinel.conf"
    conf.write_text("sentinel auth-pass webstack old\nsentinel auth-user webstack sentinel\n")

    def handler(command):
        if command[:2] == ["SENTINEL", "MASTER"]:
            return bulk("name", "webstack", "quorum", "2", "down-after-milliseconds", "5000")
        if command[:3] == ["SENTINEL", "CONFIG", "GET"]:
            return bulk("announce-ip", "10.0.0.1", "sentinel-user", "sentinel")
        return b"+OK\r\n"

    server = FakeServer(handler)
    wanted = params(
        mode="sentinel",
        master_name="webstack",
        sentinel_config_file=str(conf),
        master_settings={
            "quorum": "2",
            "down-after-milliseconds": 4000,
            "auth-user": "sentinel",
            "auth-pass": "new",
        },
        settings={"announce-ip": "10.0.0.1", "sentinel-user": "sentinel"},
    )
    with r.RespClient(port=server.port) as client:
        changes, _ = settings_mod.apply(client, wanted, False)
    assert changes == {"down-after-milliseconds": ("5000", "4000"), "auth-pass": ("old", "new")}
    assert [
        "SENTINEL",
        "SET",
        "webstack",
        "down-after-milliseconds",
        "4000",
        "auth-pass",
        "new",
    ] in (server.seen)


def test_topology_of_a_replica_and_a_sentinel():
    server = FakeServer(
        lambda c: (
            b"*5\r\n$5\r\nslave\r\n$8\r\n10.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:5\r\n"
            if c[0] == "ROLE"
            else b"+PONG\r\n"
        )
    )
    with r.RespClient(port=server.port) as client:
        out = info_mod.ask_server(client)
    assert out["ready"]
    assert out["role"] == "replica"
    assert out["link_status"] == "connected"

    def sentinel(command):
        sub = command[1].upper()
        if sub == "GET-MASTER-ADDR-BY-NAME":
            return bulk("10.0.0.2", "6379")
        if sub == "MASTER":
            return bulk("flags", "master", "num-other-sentinels", "2", "quorum", "2")
        if sub == "REPLICAS":
            return b"*1\r\n" + bulk("ip", "10.0.0.1", "port", "6379", "flags", "slave")
        return b"-NOQUORUM 1 usable Sentinels\r\n"

    server = FakeServer(sentinel)
    with r.RespClient(port=server.port) as client:
        out = info_mod.ask_sentinel(client, "webstack")
    assert (out["master_host"], out["master_port"]) == ("10.0.0.2", 6379)
    assert out["num_other_sentinels"] == 2
    assert out["replicas"][0]["ip"] == "10.0.0.1"
    assert not out["quorum_ok"]
    assert out["quorum_message"].startswith("NOQUORUM")


def test_sentinel_that_does_not_know_the_master():
    server = FakeServer(lambda c: b"*-1\r\n")
    with r.RespClient(port=server.port) as client:
        out = info_mod.ask_sentinel(client, "webstack")
    assert out["master_host"] is None
    assert "does not monitor" in out["error"]
