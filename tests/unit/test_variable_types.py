"""Booleans and numbers given as `-e key=value` are strings: the roles convert them where it counts.

`-e nextjs_standalone=false` hands the tasks the string "false". ansible-core
2.19 refuses it as a condition ("Conditionals must have a boolean result"), and
inside an expression it is worse: a non-empty string is true, so
`'a' if nextjs_standalone else 'b'` picks 'a'. Likewise `-e redis_port=6379`
makes `redis_port != redis_sentinel_port` compare a string with a number.
Argument spec validation checks such values but does not convert what the
tasks see.

The checks read the variables each role declares in meta/argument_specs.yml
(`type: bool`, plus the playbooks' switches documented for `-e`; `type: int`
and `float`) and scan tasks, handlers, vars, defaults, templates, playbooks and
group_vars with Jinja's own parser. `| default(...)` may come in between.

A bool is reported when its truth is taken without `| bool`:

- in a condition: `when`, `changed_when`, `failed_when`, `until`, assert's `that`;
- in any expression: the test of `{% if %}` or of `x if <test> else y`, an
  operand of `not`, `and`, `or`, the input of `ternary` or of an argument-less
  `select`/`reject`, a `true`/`false`/`truthy`/`falsy`/`sameas` test, a
  comparison with `true`/`false`;
- in a template (*.j2), anywhere: there the value also ends up as data
  (`'tls': redis_backup_redis_tls` in a JSON file that a script reads, a macro
  that branches on `is boolean`), where the string "false" is no better.

A number is reported when it is compared, computed with or given to `range()`
without `| int` or `| float`. Rendered as it is, a string "4" reads the same.

Not reported: values passed to module parameters and keywords (`no_log`,
`retries`), which Ansible converts itself. Not followed: a value copied into
another variable (`{% set x = var %}`, `vars: {x: "{{ var }}"}`) and used under
that name, and keys of list items (`item.sudo`), which `-e key=value` cannot
set as strings. The lab's molecule/ files are not scanned.
"""

from __future__ import annotations

import re
import textwrap
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import jinja2
import pytest
import yaml
from jinja2 import nodes

ROOT = Path(__file__).resolve().parents[2]

# Bools that are no role's variables: the playbooks' switches documented for `-e`, and
# webstack_backup_enabled of the inventories.
PLAYBOOK_SWITCHES = {
    "upgrade_packages",
    "upgrade_app_release",
    "upgrade_reboot",
    "restore_pgbouncer",
    "restore_backup_after",
    "webstack_backup_enabled",
}
CONDITION_KEYS = {"when", "changed_when", "failed_when", "until"}
ASSERT_MODULES = {"assert", "ansible.builtin.assert", "ansible.legacy.assert"}
# Filters that hand their input on with its type.
PASS_THROUGH_FILTERS = {"default", "d", "mandatory"}
TRUTH_FILTERS = {"ternary"}
TRUTH_TESTS = {"true", "false", "truthy", "falsy", "sameas"}
ARITHMETIC = (
    nodes.Add,
    nodes.Sub,
    nodes.Mul,
    nodes.Div,
    nodes.FloorDiv,
    nodes.Mod,
    nodes.Pow,
    nodes.Neg,
    nodes.Pos,
)
# libyaml when it is there: the pure-Python parser takes seconds for the whole tree.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ENV = jinja2.Environment(extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do"])  # noqa: S701


def spec_variables(types: set[str]) -> set[str]:
    names = set()
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            for name, option in (entry.get("options") or {}).items():
                if option.get("type") in types:
                    names.add(name)
    return names


def yaml_files() -> list[Path]:
    patterns = [
        "site.yml",
        "roles/*/tasks/**/*.yml",
        "roles/*/handlers/**/*.yml",
        "roles/*/vars/**/*.yml",
        "roles/*/defaults/**/*.yml",
        "playbooks/**/*.yml",
        "group_vars/**/*.yml",
        "inventories/*/group_vars/**/*.yml",
        "inventories/*/host_vars/**/*.yml",
    ]
    found = {p.resolve(): p for pattern in patterns for p in ROOT.glob(pattern)}
    return sorted(found.values())


def template_files() -> list[Path]:
    return sorted(ROOT.glob("roles/*/templates/**/*.j2"))


# ----------------------------------------------------- how a value is used
# What an expression does with the value of one of its parts.
PASSES = "passes"  # hands it on: `x | default(...)`, a branch of `a if b else c`, a list item
FINE = "fine"  # `x | bool`, `x is defined`
OTHER = "other"  # any other use: a filter, a dict value, a macro argument, the output
PASSING_NODES = (nodes.CondExpr, nodes.List, nodes.Tuple, nodes.Operand)
TRUTH_NODES = {
    nodes.Not: "is negated",
    nodes.And: "is an operand of and",
    nodes.Or: "is an operand of or",
}


def filter_use(parent: nodes.Filter) -> str:
    if parent.name == "bool":
        return FINE
    if parent.name in PASS_THROUGH_FILTERS:
        return PASSES
    if parent.name in TRUTH_FILTERS or (parent.name in {"select", "reject"} and not parent.args):
        return f"goes into {parent.name}"
    return OTHER


def use_by(parent: nodes.Node, child: nodes.Node) -> str:
    """What ``parent`` does with ``child``: PASSES, FINE, OTHER, or why it takes its truth."""
    if isinstance(parent, nodes.Filter) and parent.node is child:
        return filter_use(parent)
    if isinstance(parent, (nodes.If, nodes.CondExpr)) and parent.test is child:
        return "is the test of " + ("{% if %}" if isinstance(parent, nodes.If) else "an inline if")
    if isinstance(parent, nodes.Test):
        return f"is tested with `is {parent.name}`" if parent.name in TRUTH_TESTS else FINE
    if isinstance(parent, nodes.Compare) and any(
        isinstance(n, nodes.Const) and isinstance(n.value, bool)
        for n in [parent.expr, *(op.expr for op in parent.ops)]
    ):
        return "is compared with a boolean"
    return TRUTH_NODES.get(type(parent), PASSES if isinstance(parent, PASSING_NODES) else OTHER)


def other_use(parent: nodes.Node, whole_is_condition: bool, in_template: bool) -> str | None:
    if isinstance(parent, nodes.Output) and whole_is_condition:
        return "decides the condition"
    if not in_template:
        return None
    return (
        f"goes into | {parent.name}"
        if isinstance(parent, nodes.Filter)
        else "is used in a template"
    )


def truth_use(path: list[nodes.Node], whole_is_condition: bool, in_template: bool) -> str | None:
    """Why the bool at the end of ``path`` (root first) is read without `| bool`, or None.

    ``whole_is_condition``: the text is a condition, its value is taken for its truth.
    ``in_template``: a *.j2 file, where any use but through `| bool` counts.
    """
    child = path[-1]
    for parent in reversed(path[:-1]):
        use = use_by(parent, child)
        if use == PASSES:
            child = parent
            continue
        if use == FINE:
            return None
        return other_use(parent, whole_is_condition, in_template) if use == OTHER else use
    return "decides the condition" if whole_is_condition else None


def number_use(path: list[nodes.Node], _condition: bool, _in_template: bool) -> str | None:
    """Why the number at the end of ``path`` is compared or computed with as it is, or None."""
    child = path[-1]
    for parent in reversed(path[:-1]):
        passes = isinstance(parent, PASSING_NODES) and not (
            isinstance(parent, nodes.CondExpr) and parent.test is child
        )
        if isinstance(parent, nodes.Filter) and parent.node is child:
            passes = parent.name in PASS_THROUGH_FILTERS  # `| int`, `| float`, `| string` end it
        elif isinstance(parent, nodes.Compare):
            return "is compared"
        elif isinstance(parent, ARITHMETIC):
            return "is computed with"
        elif (
            isinstance(parent, nodes.Call)
            and isinstance(parent.node, nodes.Name)
            and parent.node.name == "range"
        ):
            return "goes into range()"
        if not passes:
            return None
        child = parent
    return None


@dataclass(frozen=True)
class Rule:
    names: set[str]
    fix: str
    use: Callable[[list[nodes.Node], bool, bool], str | None]


BOOLS = Rule(spec_variables({"bool"}) | PLAYBOOK_SWITCHES, "| bool", truth_use)
NUMBERS = Rule(spec_variables({"int", "float"}), "| int or | float", number_use)


# --------------------------------------------------------------- the scanner
@dataclass(frozen=True)
class Finding:
    where: str
    line: int
    name: str
    why: str
    nth: int = field(default=0, compare=False)  # which reference to the name in its text

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.name} {self.why}"


def referenced_name(node: nodes.Node, names: set[str]) -> str | None:
    """The variable this node reads: `var`, `hostvars[h].var`, `vars['var']`."""
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in names:
        return node.name
    if isinstance(node, nodes.Getattr) and node.attr in names:
        return node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and node.arg.value in names
    ):
        return node.arg.value
    return None


def scan_jinja(
    source: str,
    where: str,
    rule: Rule,
    *,
    condition: bool = False,
    in_template: bool = False,
    env: jinja2.Environment = ENV,
) -> list[Finding]:
    """Findings in one template text, with Jinja's line numbers."""
    with warnings.catch_warnings():
        # Jinja's lexer warns about regex escapes (`'\\s'`) in string literals.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            tree = env.parse(source)
        except jinja2.TemplateSyntaxError as e:
            raise AssertionError(f"{where}: {e.message} (line {e.lineno} of the text)") from e
    found: list[Finding] = []
    seen: Counter[str] = Counter()

    def walk(node: nodes.Node, path: list[nodes.Node]) -> None:
        path = [*path, node]
        name = referenced_name(node, rule.names)
        if name is not None:
            why = rule.use(path, condition, in_template)
            if why:
                found.append(
                    Finding(where, node.lineno, name, f"{why} without {rule.fix}", seen[name])
                )
            seen[name] += 1
            return
        for child in node.iter_child_nodes():
            walk(child, path)

    walk(tree, [])
    return found


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def placed(findings: list[Finding], node: yaml.ScalarNode, lines: list[str]) -> list[Finding]:
    """Findings with the file's line numbers.

    A folded or quoted scalar loses its line breaks, so Jinja's line count is of
    no use: the n-th reference to a name goes to the n-th source line of the
    scalar that names it.
    """
    span = range(node.start_mark.line, min(node.end_mark.line, len(lines) - 1) + 1)
    result = []
    for f in findings:
        hits = [i + 1 for i in span if re.search(rf"\b{f.name}\b", lines[i])]
        line = hits[min(f.nth, len(hits) - 1)] if hits else node.start_mark.line + 1
        result.append(replace(f, line=line))
    return result


def scan_yaml(text: str, where: str, rule: Rule = BOOLS) -> list[Finding]:
    found: list[Finding] = []
    lines = text.splitlines()

    def walk(node: yaml.Node, key: str | None, parent_key: str | None) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(v, k.value if isinstance(k, yaml.ScalarNode) else None, key)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, key, parent_key)
        elif isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
            if key in CONDITION_KEYS or (key == "that" and parent_key in ASSERT_MODULES):
                # A bare expression; `{{ }}` in a condition is a template all the same.
                source = node.value if is_template(node.value) else "{{ (" + node.value + ") }}"
                found.extend(placed(scan_jinja(source, where, rule, condition=True), node, lines))
            elif is_template(node.value):
                found.extend(placed(scan_jinja(node.value, where, rule), node, lines))

    # compose, not load: the nodes keep their lines, and !unsafe or !vault need no constructor.
    for document in yaml.compose_all(text, Loader=LOADER):
        if document is not None:
            walk(document, None, None)
    return found


def template_delimiters() -> dict[str, tuple[str, str]]:
    """Templates the tasks render with other variable delimiters: path -> (start, end)."""
    found = {}

    def walk(data, role: str) -> None:
        if isinstance(data, list):
            for item in data:
                walk(item, role)
        elif isinstance(data, dict):
            if "variable_start_string" in data and "src" in data:
                path = f"roles/{role}/templates/{data['src']}"
                found[path] = (data["variable_start_string"], data["variable_end_string"])
            for value in data.values():
                walk(value, role)

    for tasks in ROOT.glob("roles/*/tasks/**/*.yml"):
        data = yaml.load(tasks.read_text(), Loader=LOADER)  # noqa: S506 - a safe loader
        walk(data, tasks.relative_to(ROOT).parts[1])
    return found


def scan_template(
    text: str, where: str, rule: Rule = BOOLS, delimiters: tuple[str, str] | None = None
) -> list[Finding]:
    env = ENV
    if delimiters:
        env = ENV.overlay(variable_start_string=delimiters[0], variable_end_string=delimiters[1])
    return scan_jinja(text, where, rule, in_template=True, env=env)


def scan_tree(rule: Rule) -> list[Finding]:
    found: list[Finding] = []
    for path in yaml_files():
        found += scan_yaml(path.read_text(), str(path.relative_to(ROOT)), rule)
    delimiters = template_delimiters()
    for path in template_files():
        where = str(path.relative_to(ROOT))
        found += scan_template(path.read_text(), where, rule, delimiters.get(where))
    return found


# ------------------------------------------------------------------ the tree
def test_the_roles_declare_the_variables():
    assert {"nextjs_standalone", "firewall_enabled", "nginx_drain_force"} <= BOOLS.names
    assert {"redis_port", "nextjs_keep_releases"} <= NUMBERS.names
    assert not BOOLS.names & NUMBERS.names


def test_the_scan_covers_tasks_templates_and_playbooks():
    files = {str(p.relative_to(ROOT)) for p in yaml_files() + template_files()}
    for expected in (
        "roles/nextjs/tasks/build.yml",
        "roles/postgresql/handlers/main.yml",
        "roles/nginx/vars/main.yml",
        "roles/nextjs/templates/ecosystem.config.json.j2",
        "playbooks/monitoring.yml",
        "playbooks/tasks/upgrade_redis_host.yml",
        "group_vars/all/stack.yml",
    ):
        assert expected in files
    assert template_delimiters() == {
        "roles/prometheus/templates/rules/webstack.rules.yml.j2": ("[[", "]]")
    }


def test_every_bool_is_read_through_the_bool_filter():
    findings = scan_tree(BOOLS)
    assert findings == [], "\n" + "\n".join(map(str, findings))


def test_every_number_is_converted_before_it_is_compared_or_computed():
    findings = scan_tree(NUMBERS)
    assert findings == [], "\n" + "\n".join(map(str, findings))


# --------------------------------------------------------------- the scanner
BAD_YAML = {
    "when": "when: nextjs_standalone",
    "when list": "when:\n  - true\n  - not nextjs_standalone",
    "until": "until: __r.rc == 0 or nginx_drain_force",
    "failed_when": "failed_when: x | length > 0 and firewall_enabled | default(true)",
    "assert": "ansible.builtin.assert:\n  that:\n    - not redis_tls_enabled or y",
    "template condition": "when: '{{ nextjs_standalone }}'",
    "inline if": "path: \"{{ 'a' if nextjs_standalone else 'b' }}\"",
    "and in vars": '__x: "{{ pgbouncer_exporter_enabled and __y }}"',
    "hostvars": "when: hostvars[h].postgresql_allow_restart",
    "vars item": "when: vars['postgresql_allow_restart']",
    "ternary": "state: \"{{ firewall_enabled | ternary('present', 'absent') }}\"",
    "select": 'x: "{{ [nginx_gzip_enabled, nginx_hsts_enabled] | select | list }}"',
    "compare": "when: false == nextjs_standalone",
    "is true": "when: nextjs_standalone is true",
    "block scalar": "when: >-\n  x is defined\n  and nextjs_standalone",
    "playbook switch": "when: restore_backup_after | default(true)",
}
GOOD_YAML = {
    "bool": "when: nextjs_standalone | bool",
    "default then bool": "when: not (restore_backup_after | default(true) | bool)",
    "module parameter": 'tls: "{{ redis_tls_enabled }}"',
    "no_log": 'no_log: "{{ redis_no_log }}"',
    "inline if, bool": "path: \"{{ 'a' if nextjs_standalone | bool else 'b' }}\"",
    "message": "msg: set nextjs_standalone to false",
    "branch value": 'x: "{{ nextjs_standalone if y else z }}"',
    "defined": "when: nextjs_standalone is defined",
    "other names": "when: nextjs_standalone_x and not nextjs_standalone2",
    "attribute of an item": "when: item.nextjs_standalone_x",
    "assignment": 'vars:\n  nextjs_standalone: "{{ upgrade_plan_packages }}"',
    "unsafe": "x: !unsafe '{{ nextjs_standalone and y }}'",
}
BAD_TEMPLATES = {
    "if tag": "{% if firewall_log_dropped %}log{% endif %}",
    "elif tag": "{% if x %}a{% elif not firewall_log_dropped %}b{% endif %}",
    "inline if": "X11Forwarding {{ 'yes' if common_sshd_x11_forwarding else 'no' }}",
    "data": "{{ {'tls': redis_backup_redis_tls} | to_nice_json }}",
    "lower": "x={{ common_fail2ban_bantime_increment | lower }}",
    "macro argument": "{{ ini('log_connections', pgbouncer_log_connections) }}",
    "in a macro": "{% macro f(p) %}{{ p if nginx_listen_ipv6 else '' }}{% endmacro %}",
}
GOOD_TEMPLATES = {
    "bool": "{% if firewall_log_dropped | bool %}log{% endif %}",
    "bool lower": "strict-ssl={{ nodejs_npm_strict_ssl | bool | lower }}",
    "data": "{{ {'tls': redis_backup_redis_tls | bool} | to_nice_json }}",
    "defined": "{{ 'x' if firewall_log_dropped is defined else '' }}",
    "a number": "port={{ redis_port }}",
}
BAD_NUMBERS = {
    "compare": "when: x | length > nextjs_keep_releases",
    "compare two": "until: redis_port != redis_sentinel_port | int",
    "arithmetic": 'x: "{{ nextjs_pm2_listen_timeout // 1000 * 2 }}"',
    "negative": 'x: "{{ -redis_port }}"',
    "range": 'loop: "{{ range(1, nextjs_keep_releases + 1) | list }}"',
    "range argument": 'loop: "{{ range(nextjs_keep_releases) | list }}"',
    "default": "when: redis_port | default(6379) > 1024",
}
GOOD_NUMBERS = {
    "int": "when: nextjs_keep_releases | int > 1",
    "float": 'x: "{{ postgresql_checkpoint_completion_target | float * 2 }}"',
    "rendered": 'x: "port {{ redis_port }}"',
    "concatenated": "x: \"{{ 'host:' ~ redis_port }}\"",
    "module parameter": 'port: "{{ redis_port }}"',
    "in a list": 'ports: "{{ [redis_port, redis_sentinel_port] }}"',
}


@pytest.mark.parametrize("snippet", BAD_YAML.values(), ids=BAD_YAML.keys())
def test_the_scanner_flags_bools_in_yaml(snippet):
    assert scan_yaml(snippet, "snippet.yml") != []


@pytest.mark.parametrize("snippet", GOOD_YAML.values(), ids=GOOD_YAML.keys())
def test_the_scanner_passes_bools_in_yaml(snippet):
    assert scan_yaml(snippet, "snippet.yml") == []


@pytest.mark.parametrize("snippet", BAD_TEMPLATES.values(), ids=BAD_TEMPLATES.keys())
def test_the_scanner_flags_bools_in_templates(snippet):
    assert scan_template(snippet, "snippet.j2") != []


@pytest.mark.parametrize("snippet", GOOD_TEMPLATES.values(), ids=GOOD_TEMPLATES.keys())
def test_the_scanner_passes_bools_in_templates(snippet):
    assert scan_template(snippet, "snippet.j2") == []


@pytest.mark.parametrize("snippet", BAD_NUMBERS.values(), ids=BAD_NUMBERS.keys())
def test_the_scanner_flags_numbers(snippet):
    assert scan_yaml(snippet, "snippet.yml", NUMBERS) != []


@pytest.mark.parametrize("snippet", GOOD_NUMBERS.values(), ids=GOOD_NUMBERS.keys())
def test_the_scanner_passes_numbers(snippet):
    assert scan_yaml(snippet, "snippet.yml", NUMBERS) == []


def test_the_scanner_names_file_and_line():
    tasks = textwrap.dedent(
        """\
        - name: Build
          ansible.builtin.command: npm run build
          when: nextjs_standalone
        - name: Check
          ansible.builtin.assert:
            that: >-
              x is defined
              and (not nextjs_health_check_release | bool
                   or not nextjs_health_check_release)
        """
    )
    assert [str(f) for f in scan_yaml(tasks, "roles/nextjs/tasks/build.yml")] == [
        "roles/nextjs/tasks/build.yml:3: nextjs_standalone decides the condition without | bool",
        "roles/nextjs/tasks/build.yml:9: nextjs_health_check_release is negated without | bool",
    ]


def test_the_scanner_reads_templates_with_other_delimiters():
    text = "[[ 'a' if prometheus_alert_rules_enabled else 'b' ]] {{ $labels.job }}\n"
    assert scan_template(text, "rules.j2", delimiters=("[[", "]]")) != []
    fixed = text.replace("enabled else", "enabled | bool else")
    assert scan_template(fixed, "rules.j2", delimiters=("[[", "]]")) == []
