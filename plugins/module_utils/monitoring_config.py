"""Offline checks of the monitoring tier's configuration files.

Grafana, Loki and Alloy come from the vendor's apt repository, so a control
node (or a test machine without access to it) cannot ask the binaries whether
a configuration is valid. These pure functions check what can be checked
without them, and the roles run them before any file is written:

- ``alloy_config_errors``: a parser of the Alloy configuration syntax
  (blocks, attributes, expressions, the newline rules for lists and objects)
  plus the component references this collection relies on;
- ``loki_config_errors``: structure of a single-binary Loki YAML config;
- ``grafana_ini_errors``, ``grafana_datasource_errors`` and
  ``grafana_dashboard_errors``: grafana.ini syntax, provisioned data sources and
  dashboard JSON, including that every panel names a provisioned data source.

Each returns a list of human-readable problems; an empty list means the check
passed. When the real binary is installed the roles validate with it as well.
"""

from __future__ import annotations

import configparser
import json
import re
from dataclasses import dataclass, field

import yaml

# --------------------------------------------------------------------- Alloy


class AlloySyntaxError(ValueError):
    """A syntax error in an Alloy configuration, with its line number."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class Token:
    kind: str  # ident, number, string, op, term, eof
    value: str
    line: int


# Two-character operators first, so that "==" is not read as "=" "=".
_OPERATOR = re.compile(r"==|!=|<=|>=|&&|\|\||[{}\[\]()=,.+\-*/%^<>!]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_STRING_ESCAPES = set('abfnrtv\\"') | {"x", "u", "U"} | set("01234567")
# After these tokens a newline ends the statement (or, inside a list or
# object, needs a comma first), as in Go.
_ENDS_STATEMENT = {"ident", "number", "string"}
_CLOSERS = {")", "]", "}"}


class _Lexer:
    """Splits Alloy text into tokens; newlines become terminators where Go would insert ';'."""

    def __init__(self, text: str):
        self.text = text
        self.i = 0
        self.line = 1
        self.tokens: list[Token] = []

    def run(self) -> list[Token]:
        text, n = self.text, len(self.text)
        while self.i < n:
            ch = text[self.i]
            if ch == "\n":
                self.newline()
                self.line += 1
                self.i += 1
            elif ch in " \t\r":
                self.i += 1
            elif text.startswith("//", self.i):
                end = text.find("\n", self.i)
                self.i = n if end < 0 else end
            elif text.startswith("/*", self.i):
                self.block_comment()
            elif ch == '"':
                self.string()
            elif ch == "`":
                self.raw_string()
            elif ch.isdigit():
                self.match(_NUMBER, "number")
            elif ch.isalpha() or ch == "_":
                self.match(_IDENT, "ident")
            else:
                self.operator(ch)
        self.newline()
        self.tokens.append(Token("eof", "", self.line))
        return self.tokens

    def newline(self):
        last = self.tokens[-1] if self.tokens else None
        if last is None:
            return
        if last.kind in _ENDS_STATEMENT or (last.kind == "op" and last.value in _CLOSERS):
            self.tokens.append(Token("term", "\n", self.line))

    def block_comment(self):
        end = self.text.find("*/", self.i + 2)
        if end < 0:
            raise AlloySyntaxError(self.line, "unterminated block comment")
        comment = self.text[self.i : end + 2]
        if "\n" in comment:
            self.newline()
        self.line += comment.count("\n")
        self.i = end + 2

    def string(self):
        text, n, j = self.text, len(self.text), self.i + 1
        while True:
            if j >= n or text[j] == "\n":
                raise AlloySyntaxError(self.line, "unterminated string")
            if text[j] == "\\":
                if j + 1 >= n or text[j + 1] not in _STRING_ESCAPES:
                    raise AlloySyntaxError(self.line, "unknown escape sequence in string")
                j += 2
            elif text[j] == '"':
                break
            else:
                j += 1
        self.tokens.append(Token("string", text[self.i + 1 : j], self.line))
        self.i = j + 1

    def raw_string(self):
        end = self.text.find("`", self.i + 1)
        if end < 0:
            raise AlloySyntaxError(self.line, "unterminated raw string")
        self.tokens.append(Token("string", self.text[self.i + 1 : end], self.line))
        self.line += self.text[self.i : end].count("\n")
        self.i = end + 1

    def match(self, pattern, kind: str):
        found = pattern.match(self.text, self.i)
        self.tokens.append(Token(kind, found.group(0), self.line))
        self.i = found.end()

    def operator(self, ch: str):
        if not _OPERATOR.match(self.text, self.i):
            raise AlloySyntaxError(self.line, f"unexpected character {ch!r}")
        self.match(_OPERATOR, "op")


def _tokenize(text: str) -> list[Token]:
    return _Lexer(text).run()


@dataclass
class Attribute:
    name: str
    value: object
    line: int


@dataclass
class Block:
    name: str
    label: str | None
    line: int
    body: list = field(default_factory=list)

    def attributes(self) -> dict[str, Attribute]:
        return {item.name: item for item in self.body if isinstance(item, Attribute)}

    def blocks(self) -> list[Block]:
        return [item for item in self.body if isinstance(item, Block)]


@dataclass
class Ref:
    """A dotted reference such as ``loki.write.default.receiver``."""

    path: list[str]
    line: int


@dataclass
class Call:
    func: object
    args: list
    line: int


# Binary operators by precedence, lowest first.
_BINARY = [{"||"}, {"&&"}, {"==", "!=", "<", "<=", ">", ">="}, {"+", "-"}, {"*", "/", "%"}]


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.pos = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def is_op(self, value: str) -> bool:
        return self.tok.kind == "op" and self.tok.value == value

    def expect_op(self, value: str, context: str) -> Token:
        if not self.is_op(value):
            raise AlloySyntaxError(
                self.tok.line, f"expected {value!r} {context}, got {self._show()}"
            )
        return self.advance()

    def _show(self) -> str:
        tok = self.tok
        return {"term": "newline", "eof": "end of file"}.get(tok.kind, repr(tok.value))

    def skip_terms(self):
        while self.tok.kind == "term":
            self.advance()

    # body := { statement term }
    def body(self, closing: str | None) -> list:
        items: list = []
        while True:
            self.skip_terms()
            if closing is None and self.tok.kind == "eof":
                return items
            if closing is not None and self.is_op(closing):
                return items
            if self.tok.kind == "eof":
                raise AlloySyntaxError(self.tok.line, "missing '}' at end of file")
            items.append(self.statement())
            if self.tok.kind == "term":
                continue
            if closing is not None and self.is_op(closing):
                continue
            if self.tok.kind == "eof" and closing is None:
                continue
            raise AlloySyntaxError(
                self.tok.line, f"expected a newline after the statement, got {self._show()}"
            )

    def statement(self):
        start = self.tok
        if start.kind != "ident":
            raise AlloySyntaxError(
                start.line, f"expected an attribute or block name, got {self._show()}"
            )
        names = [self.advance().value]
        while self.is_op("."):
            self.advance()
            if self.tok.kind != "ident":
                raise AlloySyntaxError(self.tok.line, "expected a name after '.'")
            names.append(self.advance().value)
        if self.is_op("="):
            if len(names) > 1:
                raise AlloySyntaxError(
                    start.line, f"attribute name {'.'.join(names)!r} must not contain dots"
                )
            self.advance()
            return Attribute(names[0], self.expression(), start.line)
        label = None
        if self.tok.kind == "string":
            label = self.advance().value
        self.expect_op("{", f"to open block {'.'.join(names)}")
        body = self.body("}")
        self.expect_op("}", f"to close block {'.'.join(names)}")
        return Block(".".join(names), label, start.line, body)

    def expression(self, level: int = 0):
        if level == len(_BINARY):
            return self.power()
        left = self.expression(level + 1)
        while self.tok.kind == "op" and self.tok.value in _BINARY[level]:
            self.advance()
            right = self.expression(level + 1)
            left = ("binary", left, right)
        return left

    def power(self):
        base = self.unary()
        if self.is_op("^"):
            self.advance()
            return ("binary", base, self.power())
        return base

    def unary(self):
        if self.is_op("!") or self.is_op("-"):
            self.advance()
            return ("unary", self.unary())
        return self.postfix()

    def postfix(self):
        value = self.primary()
        while True:
            if self.is_op("."):
                self.advance()
                if self.tok.kind != "ident":
                    raise AlloySyntaxError(self.tok.line, "expected a field name after '.'")
                name = self.advance().value
                if isinstance(value, Ref):
                    value = Ref([*value.path, name], value.line)
                else:
                    value = ("field", value, name)
            elif self.is_op("["):
                self.advance()
                index = self.expression()
                self.expect_op("]", "to close the index")
                value = ("index", value, index)
            elif self.is_op("("):
                line = self.advance().line
                args = self.items(")", "argument list")
                value = Call(value, args, line)
            else:
                return value

    def primary(self):
        tok = self.tok
        if tok.kind in ("number", "string"):
            return self.advance().value
        if tok.kind == "ident":
            self.advance()
            if tok.value in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[tok.value]
            return Ref([tok.value], tok.line)
        if self.is_op("("):
            self.advance()
            inner = self.expression()
            self.expect_op(")", "to close the parenthesis")
            return inner
        if self.is_op("["):
            self.advance()
            return self.items("]", "list")
        if self.is_op("{"):
            self.advance()
            return self.object()
        raise AlloySyntaxError(tok.line, f"expected a value, got {self._show()}")

    def items(self, closing: str, what: str) -> list:
        values = []
        while True:
            if self.is_op(closing):
                self.advance()
                return values
            values.append(self.expression())
            if self.is_op(","):
                self.advance()
                continue
            if self.is_op(closing):
                continue
            if self.tok.kind == "term":
                raise AlloySyntaxError(
                    self.tok.line,
                    f"missing ',' before newline in {what} (a trailing comma is required)",
                )
            raise AlloySyntaxError(
                self.tok.line, f"expected ',' or {closing!r} in {what}, got {self._show()}"
            )

    def object(self) -> dict:
        fields: dict = {}
        while True:
            if self.is_op("}"):
                self.advance()
                return fields
            key_tok = self.tok
            if key_tok.kind not in ("ident", "string"):
                raise AlloySyntaxError(key_tok.line, f"expected an object key, got {self._show()}")
            self.advance()
            self.expect_op("=", f"after object key {key_tok.value!r}")
            if key_tok.value in fields:
                raise AlloySyntaxError(key_tok.line, f"duplicate object key {key_tok.value!r}")
            fields[key_tok.value] = self.expression()
            if self.is_op(","):
                self.advance()
                continue
            if self.is_op("}"):
                continue
            if self.tok.kind == "term":
                raise AlloySyntaxError(
                    self.tok.line,
                    "missing ',' before newline in object (a trailing comma is required)",
                )
            raise AlloySyntaxError(
                self.tok.line, f"expected ',' or '}}' in object, got {self._show()}"
            )


def parse_alloy(text: str) -> list:
    """Parse an Alloy configuration into blocks and attributes (raises AlloySyntaxError)."""
    return _Parser(_tokenize(text)).body(None)


@dataclass(frozen=True)
class Component:
    """What the checker knows about one Alloy component."""

    labelled: bool = True
    required: frozenset = frozenset()
    required_blocks: frozenset = frozenset()
    exports: frozenset = frozenset()


def _component(required=(), blocks=(), exports=(), labelled=True) -> Component:
    return Component(labelled, frozenset(required), frozenset(blocks), frozenset(exports))


# The components the collection's templates use, and a few common ones.
ALLOY_COMPONENTS: dict[str, Component] = {
    "logging": _component(labelled=False),
    "livedebugging": _component(labelled=False),
    "tracing": _component(labelled=False),
    "http": _component(labelled=False),
    "local.file_match": _component(["path_targets"], exports=["targets"]),
    "local.file": _component(["filename"], exports=["content"]),
    "discovery.relabel": _component(["targets"], exports=["output", "rules"]),
    "loki.source.file": _component(["targets", "forward_to"]),
    "loki.source.journal": _component(["forward_to"]),
    "loki.source.syslog": _component(["forward_to"]),
    "loki.process": _component(["forward_to"], exports=["receiver"]),
    "loki.relabel": _component(["forward_to"], exports=["receiver", "rules"]),
    "loki.write": _component(blocks=["endpoint"], exports=["receiver"]),
    "loki.echo": _component(exports=["receiver"]),
    "prometheus.exporter.self": _component(exports=["targets"]),
    "prometheus.exporter.unix": _component(exports=["targets"]),
    "prometheus.scrape": _component(["targets", "forward_to"]),
    "prometheus.remote_write": _component(blocks=["endpoint"], exports=["receiver"]),
    "prometheus.relabel": _component(["forward_to"], exports=["receiver", "rules"]),
}
# First words of component names: a reference starting with one of these
# must point at a component defined in the same file.
_NAMESPACES = {name.split(".")[0] for name in ALLOY_COMPONENTS if "." in name}
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _refs(value):
    """Every Ref inside an expression."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, Call):
        yield from _refs(value.func)
        for arg in value.args:
            yield from _refs(arg)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, tuple):
        for item in value[1:]:
            yield from _refs(item)


def _walk(items):
    for item in items:
        yield item
        if isinstance(item, Block):
            yield from _walk(item.body)


def _check_duplicates(items: list, where: str, errors: list[str]):
    seen: dict[str, int] = {}
    for item in items:
        if isinstance(item, Attribute):
            if item.name in seen:
                errors.append(f"line {item.line}: attribute {item.name!r} set twice in {where}")
            seen[item.name] = item.line
        elif isinstance(item, Block):
            _check_duplicates(item.body, item.name, errors)


def _component_errors(item: Block, spec: Component) -> list[str]:
    where = f"line {item.line}: {item.name}"
    errors = []
    if spec.labelled and not item.label:
        errors.append(f"{where} needs a label")
    if not spec.labelled and item.label:
        errors.append(f"{where} takes no label")
    if item.label is not None and not _LABEL.match(item.label):
        errors.append(f"line {item.line}: invalid label {item.label!r}")
    missing = sorted(spec.required - set(item.attributes()))
    if missing:
        errors.append(f"{where} {item.label!r} lacks {', '.join(missing)}")
    block_names = {b.name for b in item.blocks()}
    errors.extend(
        f"{where} {item.label!r} needs a {needed} block"
        for needed in sorted(spec.required_blocks - block_names)
    )
    forward = item.attributes().get("forward_to")
    if forward is not None and not isinstance(forward.value, list):
        errors.append(f"line {forward.line}: forward_to must be a list")
    return errors


def alloy_config_errors(text: str) -> list[str]:
    """Problems in an Alloy configuration; [] when it parses and its references resolve."""
    try:
        items = parse_alloy(text)
    except AlloySyntaxError as exc:
        return [str(exc)]
    errors: list[str] = []
    defined: dict[tuple[str, str | None], Block] = {}
    for item in items:
        if isinstance(item, Attribute):
            errors.append(f"line {item.line}: attribute {item.name!r} outside of any block")
            continue
        spec = ALLOY_COMPONENTS.get(item.name)
        if spec is None:
            errors.append(f"line {item.line}: unknown component {item.name!r}")
            continue
        if (item.name, item.label) in defined:
            errors.append(f"line {item.line}: {item.name} {item.label!r} is defined twice")
        defined[(item.name, item.label)] = item
        errors.extend(_component_errors(item, spec))
    _check_duplicates(items, "the top level", errors)
    for item in _walk(items):
        if isinstance(item, Attribute):
            errors.extend(_reference_errors(item.value, defined))
    return errors


def _reference_errors(value, defined) -> list[str]:
    errors = []
    for ref in _refs(value):
        if ref.path[0] not in _NAMESPACES:
            continue
        for cut in range(len(ref.path) - 1, 0, -1):
            name = ".".join(ref.path[:cut])
            if name in ALLOY_COMPONENTS:
                break
        else:
            errors.append(f"line {ref.line}: {'.'.join(ref.path)} names no known component")
            continue
        rest = ref.path[cut:]
        if len(rest) < 2:
            errors.append(f"line {ref.line}: {'.'.join(ref.path)} needs a label and an export")
            continue
        label, export = rest[0], rest[1]
        if (name, label) not in defined:
            errors.append(
                f"line {ref.line}: {'.'.join(ref.path)} refers to {name} {label!r}, "
                "which is not defined"
            )
        elif export not in ALLOY_COMPONENTS[name].exports:
            errors.append(f"line {ref.line}: {name} has no export {export!r}")
    return errors


# ---------------------------------------------------------------------- Loki

LOKI_TOP_LEVEL = {
    "target",
    "auth_enabled",
    "ballast_bytes",
    "server",
    "distributor",
    "querier",
    "query_scheduler",
    "frontend",
    "query_range",
    "ruler",
    "ingester_client",
    "ingester",
    "pattern_ingester",
    "index_gateway",
    "bloom_build",
    "bloom_gateway",
    "storage_config",
    "chunk_store_config",
    "schema_config",
    "compactor",
    "limits_config",
    "frontend_worker",
    "table_manager",
    "memberlist",
    "kafka_config",
    "runtime_config",
    "operational_config",
    "tracing",
    "analytics",
    "common",
    "shutdown_delay",
    "metastore",
}
LOKI_STORES = {"tsdb", "boltdb-shipper"}
LOKI_OBJECT_STORES = {"filesystem", "s3", "aws", "gcs", "azure", "swift"}
LOKI_OBJECT_STORES |= {"bos", "cos", "alibabacloud", "inmemory"}
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h|d|w|y))+$|^0$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOKI_DURATIONS = [
    ("limits_config", "retention_period"),
    ("limits_config", "reject_old_samples_max_age"),
    ("compactor", "compaction_interval"),
    ("compactor", "retention_delete_delay"),
    ("ingester", "chunk_idle_period"),
    ("ingester", "max_chunk_age"),
]


def _is_duration(value) -> bool:
    return isinstance(value, str) and bool(_DURATION.match(value))


def _port_ok(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def _mapping(value, what: str) -> tuple[dict, list[str]]:
    """(parsed mapping, []) from YAML text or a mapping, or ({}, [the problem])."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            return {}, [f"not valid YAML: {exc}"]
    if not isinstance(value, dict):
        return {}, [f"the {what} must be a mapping"]
    return value, []


def loki_config_errors(config) -> list[str]:
    """Problems in a single-binary Loki configuration (YAML text or parsed mapping)."""
    config, problems = _mapping(config, "configuration")
    if problems:
        return problems
    errors = [f"unknown top-level key {key!r}" for key in sorted(set(config) - LOKI_TOP_LEVEL)]
    if "auth_enabled" in config and not isinstance(config["auth_enabled"], bool):
        errors.append("auth_enabled must be true or false")
    server = config.get("server") or {}
    for key in ("http_listen_port", "grpc_listen_port"):
        if key in server and not _port_ok(server[key]):
            errors.append(f"server.{key} must be a port number")
    errors.extend(_loki_schema_errors(config))
    errors.extend(_loki_storage_errors(config))
    for section, key in _LOKI_DURATIONS:
        value = (config.get(section) or {}).get(key)
        if value is not None and not _is_duration(value):
            errors.append(f"{section}.{key} is not a duration: {value!r}")
    compactor = config.get("compactor") or {}
    if compactor.get("retention_enabled"):
        if not compactor.get("delete_request_store"):
            errors.append("compactor.retention_enabled needs compactor.delete_request_store")
        if not (config.get("limits_config") or {}).get("retention_period"):
            errors.append("compactor.retention_enabled needs limits_config.retention_period")
        if not compactor.get("working_directory") and not (config.get("common") or {}).get(
            "path_prefix"
        ):
            errors.append(
                "compactor.retention_enabled needs a working_directory or common.path_prefix"
            )
    return errors


def _loki_schema_errors(config: dict) -> list[str]:
    configs = (config.get("schema_config") or {}).get("configs")
    if not isinstance(configs, list) or not configs:
        return ["schema_config.configs must list at least one period"]
    errors = []
    previous = ""
    for number, period in enumerate(configs, 1):
        where = f"schema_config.configs[{number}]"
        if not isinstance(period, dict):
            errors.append(f"{where} must be a mapping")
            continue
        start = str(period.get("from", ""))
        if not _DATE.match(start):
            errors.append(f"{where}.from must be a date YYYY-MM-DD, got {start!r}")
        elif start <= previous:
            errors.append(f"{where}.from must be later than the period before it")
        previous = start
        if period.get("store") not in LOKI_STORES:
            errors.append(f"{where}.store must be one of {sorted(LOKI_STORES)}")
        if period.get("object_store") not in LOKI_OBJECT_STORES:
            errors.append(
                f"{where}.object_store {period.get('object_store')!r} is not a known store"
            )
        if not re.match(r"^v\d+$", str(period.get("schema", ""))):
            errors.append(f"{where}.schema must look like v13")
        index = period.get("index") or {}
        if not index.get("prefix"):
            errors.append(f"{where}.index.prefix is missing")
        if index.get("period") != "24h":
            errors.append(f"{where}.index.period must be 24h for {period.get('store')}")
    return errors


def _loki_storage_errors(config: dict) -> list[str]:
    uses_fs = any(
        isinstance(p, dict) and p.get("object_store") == "filesystem"
        for p in (config.get("schema_config") or {}).get("configs") or []
    )
    if not uses_fs:
        return []
    common_fs = ((config.get("common") or {}).get("storage") or {}).get("filesystem") or {}
    store_fs = (config.get("storage_config") or {}).get("filesystem") or {}
    directory = common_fs.get("chunks_directory") or store_fs.get("directory")
    if not directory:
        return ["filesystem storage needs common.storage.filesystem.chunks_directory"]
    if not str(directory).startswith("/"):
        return [f"the chunks directory must be an absolute path, got {directory!r}"]
    return []


# ------------------------------------------------------------------- Grafana

GRAFANA_BUILTIN_DATASOURCES = {"-- Grafana --", "-- Mixed --", "-- Dashboard --", "grafana"}
_DASHBOARD_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def grafana_ini_errors(text: str) -> list[str]:
    """Syntax problems in a grafana.ini (sections, duplicate keys)."""
    parser = configparser.ConfigParser(
        strict=True, interpolation=None, comment_prefixes=("#", ";"), inline_comment_prefixes=None
    )
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        return [f"grafana.ini: {exc}".replace("\n", " ")]
    errors = []
    for section in parser.sections():
        for key, value in parser.items(section):
            if value.startswith('"""') and not (len(value) >= 6 and value.endswith('"""')):
                errors.append(f"grafana.ini [{section}] {key}: unbalanced triple quotes")
    return errors


def grafana_datasource_errors(provisioning) -> list[str]:
    """Problems in a data source provisioning file (YAML text or parsed mapping)."""
    provisioning, problems = _mapping(provisioning, "provisioning file")
    if problems:
        return problems
    errors = []
    if provisioning.get("apiVersion") != 1:
        errors.append("apiVersion must be 1")
    sources = provisioning.get("datasources") or []
    if not isinstance(sources, list):
        return [*errors, "datasources must be a list"]
    names, uids, defaults = set(), set(), 0
    for source in sources:
        name = source.get("name")
        for key in ("name", "type", "uid", "url"):
            if not source.get(key):
                errors.append(f"data source {name or '?'} lacks {key}")
        if name in names:
            errors.append(f"data source name {name!r} is used twice")
        if source.get("uid") in uids:
            errors.append(f"data source uid {source.get('uid')!r} is used twice")
        names.add(name)
        uids.add(source.get("uid"))
        defaults += bool(source.get("isDefault"))
    if defaults > 1:
        errors.append("more than one data source is marked isDefault")
    return errors


def grafana_datasource_uids(provisioning) -> list[str]:
    """The uids a provisioning file defines (YAML text or parsed mapping)."""
    provisioning, _ = _mapping(provisioning, "provisioning file")
    return [s.get("uid") for s in provisioning.get("datasources") or [] if s.get("uid")]


def _datasource_uid(ref):
    if ref is None:
        return None
    if isinstance(ref, str):
        return ref
    if isinstance(ref, dict):
        return ref.get("uid")
    return repr(ref)


def _panels(panels):
    for panel in panels or []:
        yield panel
        yield from _panels(panel.get("panels"))


def _panel_errors(panel: dict, title: str, check_ref) -> list[str]:
    where = f"panel {panel.get('title') or panel.get('id')!r}"
    errors = []
    grid = panel.get("gridPos") or {}
    if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")):
        errors.append(f"{title}: {where} needs gridPos h, w, x, y")
    elif grid["x"] + grid["w"] > 24:
        errors.append(f"{title}: {where} is wider than the 24-column grid")
    if panel.get("type") == "row":
        return errors
    errors.extend(check_ref(panel.get("datasource"), where))
    for target in panel.get("targets") or []:
        errors.extend(check_ref(target.get("datasource"), where))
        if not (target.get("expr") or target.get("query") or target.get("refId")):
            errors.append(f"{title}: {where} has a target without a query")
    return errors


def grafana_dashboard_errors(text, datasource_uids) -> list[str]:
    """Problems in one dashboard JSON: structure, and data sources that are not provisioned."""
    try:
        dashboard = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        return [f"not valid JSON: {exc}"]
    if not isinstance(dashboard, dict):
        return ["a dashboard must be a JSON object"]
    allowed = set(datasource_uids) | GRAFANA_BUILTIN_DATASOURCES
    title = dashboard.get("title") or "?"
    errors = []
    if not dashboard.get("title"):
        errors.append("the dashboard has no title")
    if not _DASHBOARD_UID.match(str(dashboard.get("uid", ""))):
        errors.append(f"{title}: uid must be 1-40 letters, digits, '-' or '_'")
    if not isinstance(dashboard.get("schemaVersion"), int):
        errors.append(f"{title}: schemaVersion must be a number")
    if dashboard.get("id") is not None:
        errors.append(f"{title}: id must be null in provisioned dashboards")

    def check_ref(ref, where) -> list[str]:
        uid = _datasource_uid(ref)
        if uid is None or uid.startswith("$") or uid in allowed:
            return []
        return [f"{title}: {where} uses data source {uid!r}, which is not provisioned"]

    ids = set()
    for panel in _panels(dashboard.get("panels")):
        if panel.get("id") in ids:
            errors.append(f"{title}: panel id {panel.get('id')} is used twice")
        ids.add(panel.get("id"))
        errors.extend(_panel_errors(panel, title, check_ref))
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        errors.extend(check_ref(variable.get("datasource"), f"variable {variable.get('name')!r}"))
    return errors
