"""A small Redis/Valkey/Sentinel client and the pure helpers of the redis modules.

The modules of this collection talk RESP2 over a plain or TLS socket with
the Python standard library only, so the managed hosts need no extra Python
package. Everything that does not touch a socket is a pure function with
unit tests (tests/unit/test_redis_modules.py).
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl

# Settings whose values never appear in results or diffs.
SECRET_SETTINGS = frozenset(
    {"masterauth", "requirepass", "auth-pass", "sentinel-pass", "tls-key-file-pass"}
)
MASK = "********"

_MEMORY = re.compile(r"^\s*(\d+)\s*(b|k|kb|m|mb|g|gb)\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}


class RespError(Exception):
    """An error reply of the server (``-ERR ...``, ``-NOPERM ...``)."""


class RespConnectionError(Exception):
    """The server could not be reached or closed the connection."""


def encode_command(args) -> bytes:
    """RESP2 array of bulk strings for one command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, bool):
            data = b"yes" if arg else b"no"
        else:
            data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_bulk(stream, body):
    length = int(body)
    if length < 0:
        return None
    data = stream.read(length + 2)
    if len(data) != length + 2:
        raise RespConnectionError("connection closed in the middle of a reply")
    return data[:-2].decode(errors="replace")


def _read_array(stream, body):
    count = int(body)
    return None if count < 0 else [read_reply(stream) for _ in range(count)]


_READERS = {
    b"+": lambda stream, body: body.decode(errors="replace"),
    b"-": lambda stream, body: RespError(body.decode(errors="replace")),
    b":": lambda stream, body: int(body),
    b"$": _read_bulk,
    b"*": _read_array,
}


def read_reply(stream):
    """Read one RESP2 reply from a binary file-like object.

    Bulk and simple strings come back as ``str``, integers as ``int``, arrays
    as lists and nil as ``None``; error replies are returned as ``RespError``
    instances (raised by the caller, so nested errors in EXEC stay values).
    """
    line = stream.readline()
    if not line or not line.endswith(b"\r\n"):
        raise RespConnectionError("connection closed by the server")
    reader = _READERS.get(line[:1])
    if reader is None:
        raise RespConnectionError(f"unexpected reply type {line[:1]!r}")
    return reader(stream, line[1:-2])


class RespClient:
    """One connection to a Redis, Valkey or Sentinel server."""

    def __init__(
        self,
        *,
        host="127.0.0.1",
        port=6379,
        username=None,
        password=None,
        timeout=5.0,
        tls=False,
        ca_file=None,
        cert_file=None,
        key_file=None,
        verify_hostname=False,
    ):
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.timeout = timeout
        self.tls = tls
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.verify_hostname = verify_hostname
        self._sock = None
        self._stream = None

    def connect(self):
        if self._sock is not None:
            return self
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            if self.tls:
                context = ssl.create_default_context(cafile=self.ca_file)
                context.check_hostname = bool(self.verify_hostname)
                # Verify the chain like Redis does, without Python's extra
                # strictness about CA extensions (internal CAs often lack them).
                context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
                if self.cert_file:
                    context.load_cert_chain(self.cert_file, self.key_file)
                sock = context.wrap_socket(sock, server_hostname=self.host)
        except (OSError, ssl.SSLError) as exc:
            raise RespConnectionError(f"{self.host}:{self.port}: {exc}") from exc
        self._sock = sock
        self._stream = sock.makefile("rb")
        if self.password:
            user = [self.username] if self.username else []
            self.command("AUTH", *user, self.password)
        return self

    def command(self, *args):
        """Send one command and return its reply; error replies raise RespError."""
        if self._sock is None:
            self.connect()
        try:
            self._sock.sendall(encode_command(args))
            reply = read_reply(self._stream)
        except OSError as exc:
            raise RespConnectionError(f"{self.host}:{self.port}: {exc}") from exc
        if isinstance(reply, RespError):
            raise reply
        return reply

    def close(self):
        for item in (self._stream, self._sock):
            if item is not None:
                with contextlib.suppress(OSError):
                    item.close()
        self._sock = self._stream = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()


# The login options every redis module takes (documented in the doc fragment
# stackops.webstack.redis_login).
LOGIN_ARGUMENT_SPEC = {
    "login_host": {"type": "str", "default": "127.0.0.1"},
    "login_user": {"type": "str"},
    "login_password": {"type": "str", "no_log": True},
    "tls": {"type": "bool", "default": False},
    "tls_ca_file": {"type": "path"},
    "tls_cert_file": {"type": "path"},
    "tls_key_file": {"type": "path", "no_log": False},
}


def client_from_params(params: dict, port: int, timeout: float) -> RespClient:
    """A (not yet connected) client from module parameters in LOGIN_ARGUMENT_SPEC."""
    return RespClient(
        host=params["login_host"],
        port=port,
        username=params["login_user"] or None,
        password=params["login_password"] or None,
        timeout=timeout,
        tls=params["tls"],
        ca_file=params["tls_ca_file"],
        cert_file=params["tls_cert_file"],
        key_file=params["tls_key_file"],
    )


# ------------------------------------------------------------------ helpers


def pairs_to_dict(flat) -> dict:
    """[k1, v1, k2, v2] (CONFIG GET, SENTINEL MASTER) -> {k1: v1, k2: v2}."""
    flat = list(flat or [])
    if len(flat) % 2:
        raise ValueError("odd number of elements in a key/value reply")
    return dict(zip(flat[::2], flat[1::2], strict=True))


def memory_to_bytes(text):
    """'256mb' -> 268435456 with Redis' units (k=1000, kb=1024 ...); None if not a size."""
    match = _MEMORY.match(str(text))
    if not match:
        return None
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def normalize_value(value) -> str:
    """The text CONFIG GET / SENTINEL MASTER would return for a desired value.

    Booleans become yes/no, lists are joined with spaces (bind, save), memory
    sizes with a unit become bytes, everything else is its string form.
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(normalize_value(item) for item in value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    size = memory_to_bytes(text)
    if size is not None:
        return str(size)
    if text.lower() in ("true", "false"):
        return "yes" if text.lower() == "true" else "no"
    return text


def changed_settings(current: dict, desired: dict) -> dict:
    """{name: (current, wanted)} for every desired setting whose value differs."""
    changes = {}
    for name, value in desired.items():
        wanted = normalize_value(value)
        have = current.get(name)
        have = None if have is None else str(have)
        if have != wanted:
            changes[name] = (have, wanted)
    return changes


def mask(name, value, secrets=SECRET_SETTINGS):
    if name in secrets and value not in (None, ""):
        return MASK
    return value


def diff_text(values: dict, secrets=SECRET_SETTINGS) -> str:
    """'name value' lines for a diff, secrets masked, sorted by name."""
    lines = []
    for name in sorted(values):
        value = values[name]
        lines.append(f"{name} {'(unset)' if value is None else mask(name, value, secrets)}")
    return "\n".join(lines) + ("\n" if lines else "")


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "a": "\a"}
_HEX = set("0123456789abcdefABCDEF")


def _double_quoted(line: str, i: int) -> tuple[str, int]:
    """Text of a double-quoted argument starting after the quote at i; returns (text, end)."""
    out = []
    n = len(line)
    while i < n:
        ch = line[i]
        digits = line[i + 2 : i + 4]
        if ch == "\\" and line[i + 1 : i + 2] == "x" and len(digits) == 2 and set(digits) <= _HEX:
            out.append(chr(int(digits, 16)))
            i += 4
            continue
        if ch == "\\" and i + 1 < n:
            out.append(_ESCAPES.get(line[i + 1], line[i + 1]))
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise ValueError("unbalanced quotes")


def _single_quoted(line: str, i: int) -> tuple[str, int]:
    out = []
    n = len(line)
    while i < n:
        if line[i] == "\\" and line[i + 1 : i + 2] == "'":
            out.append("'")
            i += 2
            continue
        if line[i] == "'":
            return "".join(out), i + 1
        out.append(line[i])
        i += 1
    raise ValueError("unbalanced quotes")


def split_config_args(line: str) -> list[str]:
    """Split one config file line like Redis does (sdssplitargs).

    Handles double quotes with backslash escapes (including \\xHH) and single
    quotes; raises ValueError on unbalanced quotes.
    """
    args = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return args
        if line[i] in "\"'":
            reader = _double_quoted if line[i] == '"' else _single_quoted
            text, i = reader(line, i + 1)
            if i < n and not line[i].isspace():
                raise ValueError("closing quote must be followed by a space")
            args.append(text)
            continue
        start = i
        while i < n and not line[i].isspace():
            i += 1
        args.append(line[start:i])


def sentinel_file_settings(text: str, master_name: str) -> dict:
    """Per-master settings Sentinel keeps only in its file (auth-user, auth-pass ...).

    Returns {option: value} from lines ``sentinel <option> <master_name> <value>``.
    """
    found = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            args = split_config_args(line)
        except ValueError:
            continue
        if len(args) == 4 and args[0].lower() == "sentinel" and args[2] == master_name:
            found[args[1].lower()] = args[3]
    return found


def parse_role(reply) -> dict:
    """ROLE reply -> {role, master_host, master_port, link_status, offset, replicas}."""
    if not reply:
        return {"role": None}
    role = reply[0]
    if role == "master":
        replicas = [
            {"ip": item[0], "port": int(item[1]), "offset": int(item[2])} for item in reply[2]
        ]
        return {"role": "master", "offset": int(reply[1]), "replicas": replicas}
    if role in ("slave", "replica"):
        return {
            "role": "replica",
            "master_host": reply[1],
            "master_port": int(reply[2]),
            "link_status": reply[3],
            "offset": int(reply[4]),
        }
    if role == "sentinel":
        return {"role": "sentinel", "masters": list(reply[1])}
    return {"role": role}
