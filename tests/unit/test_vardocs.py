"""tools/vardocs.py: the README variable tables generated from meta/argument_specs.yml."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import vardocs
import yaml

ROOT = Path(__file__).resolve().parents[2]

SPEC = {
    "argument_specs": {
        "main": {
            "short_description": "A role",
            "options": {
                "demo_enabled": {"type": "bool", "default": True, "description": "Turn it on."},
                "demo_mode": {
                    "type": "str",
                    "choices": ["fast", "safe"],
                    "default": "fast",
                    "description": "How it runs.",
                },
                "demo_port": {"type": "int", "default": 8080, "description": ["Port;", "TCP."]},
            },
        },
        "other": {
            "short_description": "Another entry point",
            "options": {
                "demo_enabled": {"type": "bool", "default": True, "description": "Turn it on."},
                "demo_port": {"type": "int", "default": 9090, "description": "Port here."},
                "demo_target": {"type": "str", "required": True, "description": "Target."},
            },
        },
        "same": {
            "short_description": "Nothing of its own",
            "options": {
                "demo_enabled": {"type": "bool", "default": True, "description": "Turn it on."},
            },
        },
    }
}
DEFAULTS = {"demo_enabled": True, "demo_mode": "fast", "demo_port": 8080, "demo_target": ""}
README = textwrap.dedent(
    """\
    # Role `demo`

    Intro.

    ## Variables

    Prose before the table.

    | Variable | Default | Description |
    |---|---|---|
    | `demo_enabled` | `true` | Old text. |

    Prose after the table.

    ## Tags

    `demo`.
    """
)


def make_role(root: Path, spec=None, defaults=None, readme: str = README) -> Path:
    role = root / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(spec or SPEC, sort_keys=False))
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults or DEFAULTS))
    (role / "README.md").write_text(readme)
    return role


def run(root: Path, *args: str) -> int:
    return vardocs.main(["--root", str(root), *args])


# ---------------------------------------------------------------- defaults
@pytest.mark.parametrize(
    ("option", "cell"),
    [
        ({"default": "nftables"}, "`nftables`"),
        ({"default": "/etc/nftables.conf"}, "`/etc/nftables.conf`"),
        ({"default": ""}, '`""`'),
        ({"default": "0600"}, '`"0600"`'),
        ({"default": "no"}, '`"no"`'),
        ({"default": []}, "`[]`"),
        ({"default": {}}, "`{}`"),
        ({"default": ["a", "b"]}, '`["a", "b"]`'),
        ({"default": {"full": 1, "diff": 2}}, '`{"full": 1, "diff": 2}`'),
        ({"default": True}, "`true`"),
        ({"default": False}, "`false`"),
        ({"default": 22}, "`22`"),
        ({"default": None}, "`null`"),
        ({"default": "node_{{ major }}.x"}, "`node_{{ major }}.x`"),
        ({"default": "x" * 61}, "see `defaults/main.yml`"),
        ({"default": ["a" * 30, "b" * 30]}, "see `defaults/main.yml`"),
        ({}, "(none)"),
    ],
)
def test_default_cell(option, cell):
    assert vardocs.render_default(option) == cell


def test_a_default_with_backticks_gets_a_longer_fence():
    assert vardocs.render_default({"default": "a`b"}) == "`` a`b ``"


# ---------------------------------------------------------------- escaping
def test_pipes_are_escaped_in_defaults_and_descriptions():
    option = {"default": "{{ x | default(1) }}", "description": "a | b"}
    assert vardocs.render_default(option) == r"`{{ x \| default(1) }}`"
    assert vardocs.render_description(option) == r"a \| b"


def test_a_table_row_has_three_cells_whatever_the_text():
    row = vardocs.render_table({"v": {"default": "a|b", "description": "c | d"}})[-1]
    assert row == r"| `v` | `a\|b` | c \| d |"


# ------------------------------------------------------------- descriptions
def test_description_lists_are_joined_and_white_space_collapsed():
    option = {"description": ["First  line\n  goes on.", "Second."]}
    assert vardocs.render_description(option) == "First line goes on. Second."


def test_ansible_markup_becomes_markdown():
    option = {"description": "C(a) O(b=c) I(d) B(e) L(docs,https://x.org) U(https://y.org)"}
    assert vardocs.render_description(option) == (
        "`a` `b=c` *d* **e** [docs](https://x.org) <https://y.org>"
    )


def test_choices_are_added_when_the_description_does_not_name_them():
    option = {"choices": ["drop", "accept"], "description": "Policy of the chain."}
    assert vardocs.render_description(option) == "Policy of the chain. One of `drop`, `accept`."


def test_choices_named_by_the_description_are_not_repeated():
    option = {"choices": ["full", "safe"], "description": "C(full) or C(safe) upgrade."}
    assert vardocs.render_description(option) == "`full` or `safe` upgrade."


def test_choices_named_only_in_part_are_added():
    option = {"choices": ["present", "absent"], "description": "C(absent) removes it."}
    assert vardocs.render_description(option).endswith("One of `present`, `absent`.")


def test_a_choice_inside_another_word_does_not_count():
    option = {"choices": ["low", "high"], "description": "Set it low or highest."}
    assert "One of `low`, `high`." in vardocs.render_description(option)


def test_choices_are_rendered_as_yaml_would_write_them():
    option = {"choices": ["off", "on", "auto"], "description": "Mode."}
    assert vardocs.render_description(option) == 'Mode. One of `"off"`, `"on"`, `auto`.'


def test_required_options_say_so():
    assert vardocs.render_description({"required": True, "description": "Name."}) == (
        "Name. Required."
    )


# ------------------------------------------------------------- entry points
def test_entry_points_list_only_what_main_lacks_or_defaults_otherwise():
    block = vardocs.render_block(SPEC["argument_specs"])
    text = "\n".join(block)
    assert block[0] == vardocs.BEGIN
    assert block[-1] == vardocs.END
    main, other = text.split("### Entry point `other`")
    assert [line.split("|")[1].strip() for line in main.splitlines() if line.startswith("| `")] == [
        "`demo_enabled`",
        "`demo_mode`",
        "`demo_port`",
    ]
    assert "| `demo_port` | `8080` | Port; TCP. |" in main
    assert "| `demo_mode` | `fast` | How it runs. One of `fast`, `safe`. |" in main
    assert "`demo_enabled`" not in other
    assert "| `demo_port` | `9090` | Port here. |" in other
    assert "| `demo_target` | (none) | Target. Required. |" in other
    assert "Entry point `same`" not in text


def test_a_role_without_a_main_entry_point_gets_its_entry_points_only():
    specs = {"only": {"options": {"x_a": {"default": 1, "description": "A."}}}}
    text = "\n".join(vardocs.render_block(specs))
    assert text.count("| Variable |") == 1
    assert "### Entry point `only`" in text


# ---------------------------------------------------------------- READMEs
def test_a_table_under_variables_is_replaced_and_the_prose_stays(tmp_path):
    role = make_role(tmp_path)
    assert run(tmp_path) == 0
    text = (role / "README.md").read_text()
    assert "Old text." not in text
    assert text.startswith("# Role `demo`\n\nIntro.\n\n## Variables\n\nProse before the table.\n\n")
    assert f"Prose before the table.\n\n{vardocs.BEGIN}\n\n| Variable |" in text
    assert f"{vardocs.END}\n\nProse after the table.\n\n## Tags\n\n`demo`.\n" in text
    assert "| `demo_enabled` | `true` | Turn it on. |" in text


def test_a_second_run_changes_nothing(tmp_path):
    role = make_role(tmp_path)
    run(tmp_path)
    first = (role / "README.md").read_text()
    run(tmp_path)
    assert (role / "README.md").read_text() == first


def test_only_the_first_table_under_variables_is_replaced(tmp_path):
    readme = README.replace("Prose after the table.", "Prose.\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    role = make_role(tmp_path, readme=readme)
    run(tmp_path)
    assert "| a | b |\n|---|---|\n| 1 | 2 |" in (role / "README.md").read_text()


def test_a_readme_without_a_variables_heading_is_an_error(tmp_path, capsys):
    make_role(tmp_path, readme="# Role\n\n| a |\n|---|\n")
    assert run(tmp_path) == 1
    assert 'has no "## Variables" heading' in capsys.readouterr().out


# ------------------------------------------------------------------- check
def test_check_passes_on_a_generated_role_and_finds_a_drifted_one(tmp_path, capsys):
    shutil.copytree(ROOT / "roles" / "firewall", tmp_path / "roles" / "firewall")
    assert run(tmp_path) == 0
    assert run(tmp_path, "--check") == 0
    readme = tmp_path / "roles" / "firewall" / "README.md"
    generated = readme.read_text()
    readme.write_text(generated.replace("Manage the firewall at all.", "Edited by hand."))
    capsys.readouterr()
    assert run(tmp_path, "--check") == 1
    out = capsys.readouterr().out
    assert "roles/firewall/README.md" in out
    assert "-| `firewall_enabled` | `true` | Edited by hand. |" in out
    assert "+| `firewall_enabled` | `true` | Manage the firewall at all. |" in out
    assert readme.read_text() != generated, "--check must not write"


def test_check_finds_a_changed_spec(tmp_path):
    role = make_role(tmp_path)
    run(tmp_path)
    spec = role / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text().replace("Turn it on.", "Turn it on, now."))
    assert run(tmp_path, "--check") == 1


def test_check_lists_every_drifted_readme_and_diffs_the_first(tmp_path, capsys):
    make_role(tmp_path)
    shutil.copytree(tmp_path / "roles" / "demo", tmp_path / "roles" / "demo2")
    run(tmp_path)
    for name in ("demo", "demo2"):
        readme = tmp_path / "roles" / name / "README.md"
        readme.write_text(readme.read_text().replace("Turn it on.", "Stale."))
    capsys.readouterr()
    assert run(tmp_path, "--check") == 1
    out = capsys.readouterr().out
    assert "  roles/demo/README.md" in out
    assert "  roles/demo2/README.md" in out
    assert out.count("+++ ") == 1


def test_check_skips_a_readme_that_was_never_generated(tmp_path, capsys):
    role = make_role(tmp_path)
    assert run(tmp_path, "--check") == 0
    assert "roles/demo/README.md: not generated yet" in capsys.readouterr().err
    assert (role / "README.md").read_text() == README


def test_check_finds_a_default_without_a_spec_option(tmp_path, capsys):
    make_role(tmp_path, defaults={**DEFAULTS, "demo_stray": 1})
    run(tmp_path)
    capsys.readouterr()
    assert run(tmp_path, "--check") == 1
    assert "demo_stray has no option" in capsys.readouterr().out


def test_check_finds_a_spec_option_without_a_default(tmp_path, capsys):
    defaults = {k: v for k, v in DEFAULTS.items() if k != "demo_mode"}
    make_role(tmp_path, defaults=defaults)
    run(tmp_path)
    capsys.readouterr()
    assert run(tmp_path, "--check") == 1
    assert "option demo_mode of meta/argument_specs.yml has no key" in capsys.readouterr().out


def test_a_deprecated_option_needs_no_default(tmp_path):
    spec = yaml.safe_load(yaml.safe_dump(SPEC))
    spec["argument_specs"]["main"]["options"]["demo_old"] = {
        "type": "str",
        "description": "Deprecated: use demo_mode.",
    }
    make_role(tmp_path, spec=spec)
    run(tmp_path)
    assert run(tmp_path, "--check") == 0


def test_role_limits_the_run_to_one_role(tmp_path):
    make_role(tmp_path)
    shutil.copytree(tmp_path / "roles" / "demo", tmp_path / "roles" / "demo2")
    assert run(tmp_path, "--role", "demo2") == 0
    assert (tmp_path / "roles" / "demo" / "README.md").read_text() == README
    assert vardocs.BEGIN in (tmp_path / "roles" / "demo2" / "README.md").read_text()


def test_an_unknown_role_is_an_error(tmp_path):
    make_role(tmp_path)
    assert run(tmp_path, "--role", "nope") == 2


def test_unbalanced_markers_are_an_error(tmp_path, capsys):
    make_role(tmp_path, readme=README.replace("Prose after the table.", vardocs.BEGIN))
    assert run(tmp_path, "--check") == 1
    assert "END VARIABLES" in capsys.readouterr().out


# ------------------------------------------------------------- this repo
def test_the_readmes_of_this_repository_are_in_sync(capsys):
    code = vardocs.main(["--check"])
    assert code == 0, capsys.readouterr().out
