"""`batchkit exec` never runs item text: a canary file for every hostile item in every place a
placeholder can stand (bare, '...', "...", $(...), ${...}, backticks, here-documents, comments),
exact values through real /bin/sh, refused templates, and items that look like options."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchkit.cli.main import cli
from batchkit.jobs.shell import ShellCommand, output_name, render
from batchkit.jobs.shellbatch import Batch

# Each of these runs `touch CANARY` if the shell ever reads it as code, in one context or another.
HOSTILE = [
    "$(touch CANARY)", "`touch CANARY`", "; touch CANARY", "| touch CANARY", "&& touch CANARY",
    "' ; touch CANARY ; '", '" ; touch CANARY ; "', "'$(touch CANARY)'", '"$(touch CANARY)"',
    "\\'; touch CANARY #", '\\"; touch CANARY #', "} ; touch CANARY", ") ; touch CANARY ; (",
    "${IFS}touch${IFS}CANARY", "a\nEOF\ntouch CANARY\nEOF", "x\ntouch CANARY", "$((1+1))`touch CANARY`",
    "\\", "it's", '"', "*", "$HOME", "%s %d", "-n", "a  b\tc", "{}", "{name}", "x\\\ntouch CANARY",
]

# (template, what the command prints for one item): printf writes each argument NUL-terminated,
# so an item split into two words, or glued to another, shows.
CONTEXTS = {
    "bare": ("printf '%s\\0' {}", lambda v: f"{v}\0"),
    "double": ("printf '%s\\0' \"{}\"", lambda v: f"{v}\0"),
    "double with text": ("printf '%s\\0' \"<{}>\"", lambda v: f"<{v}>\0"),
    "single": ("printf '%s\\0' '{}'", lambda v: f"{v}\0"),
    "single with text": ("printf '%s\\0' 'item: {} end'", lambda v: f"item: {v} end\0"),
    "word with text": ("printf '%s\\0' pre-{}-post", lambda v: f"pre-{v}-post\0"),
    "command substitution": ("printf '%s\\0' \"$(printf '%s' {})\"", lambda v: f"{v}\0"),
    "quoted in command substitution": ("printf '%s\\0' \"$(printf '%s' \"{}\")\"", lambda v: f"{v}\0"),
    "parameter default": ("printf '%s\\0' ${BK_UNSET_VAR:-{}}", lambda v: f"{v}\0"),
    "quoted parameter default": ("printf '%s\\0' \"${BK_UNSET_VAR:-<{}>}\"", lambda v: f"<{v}>\0"),
    "backticks": ("printf '%s\\0' \"`printf '%s' {}`\"", lambda v: f"{v}\0"),
    "here-document": ("cat <<EOF\n<{}>\nEOF", lambda v: f"<{v}>\n"),
    "here-document, parameter default": ("cat <<EOF\n<${BK_UNSET_VAR:-{}}>\nEOF", lambda v: f"<{v}>\n"),
    "here-document, tabs stripped": ("cat <<-END\n\t<{}>\n\tEND", lambda v: f"<{v}>\n"),
    "comment": ("printf 'ran\\0' # {} and more", lambda v: "ran\0"),
    "several in one word": ("printf '%s\\0' '{}'\"{}\"{}", lambda v: f"{v}{v}{v}\0"),
}


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


@pytest.mark.parametrize("context", list(CONTEXTS))
def test_hostile_items_are_data_in_every_context(context, tmp_path, monkeypatch):
    template, expected = CONTEXTS[context]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "items.bin").write_bytes(b"".join(h.encode() + b"\0" for h in HOSTILE))
    result = invoke("exec", template, "--input", "items.bin", "-0", "--keep-output", "kept", "--workers", "4")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "CANARY").exists(), f"an item ran as code in {context}"
    for item in HOSTILE:
        got = (tmp_path / "kept" / f"{output_name(item)}.out").read_bytes().decode()
        assert got == expected(item), (context, item)


@pytest.mark.parametrize("context", list(CONTEXTS))
def test_dry_run_commands_do_the_same_when_run(context, tmp_path):
    """What --dry-run prints (values inline) is the command that runs, and is safe to run too."""
    template, expected = CONTEXTS[context]
    shell = ShellCommand(template)
    for item in HOSTILE:
        shown = subprocess.run(["/bin/sh", "-c", shell.display(item)], cwd=tmp_path, capture_output=True,
                               timeout=10)
        ran = subprocess.run(["/bin/sh", "-c", shell.script(item)], cwd=tmp_path, capture_output=True, timeout=10)
        assert shown.stdout.decode() == ran.stdout.decode() == expected(item), (context, item)
    assert not (tmp_path / "CANARY").exists()


@pytest.mark.parametrize("template,joined", [("printf '%s\\0' \"<{}>\"", False), ("printf '%s\\0' '{}'", False)])
@pytest.mark.parametrize("mode", ["X", "m"])
def test_hostile_items_stay_data_with_many_items_per_command(template, joined, mode, tmp_path):
    shell = ShellCommand(template, mode=mode)
    batch = Batch(0, HOSTILE)
    out = subprocess.run(["/bin/sh", "-c", shell.script(batch)], cwd=tmp_path, capture_output=True, timeout=10)
    words = out.stdout.decode().split("\0")[:-1]
    if mode == "X":  # the word around {} repeated for each item
        assert words == [template.split(" ", 2)[2].strip("'\"").replace("{}", h) for h in HOSTILE]
    else:  # {} holds every item, joined by spaces inside the quotes
        assert len(words) == 1 and " ".join(HOSTILE) in words[0]
    assert not (tmp_path / "CANARY").exists()


TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=TEXT, context=st.sampled_from(sorted(set(CONTEXTS) - {"here-document, tabs stripped"})))
def test_any_text_comes_through_exactly_and_never_runs(value, context, tmp_path):
    template, expected = CONTEXTS[context]
    if "substitution" in context or "backticks" in context:
        value = value.rstrip("\n")  # $(...) drops trailing newlines, by definition
    shell = ShellCommand(template)
    ran = subprocess.run(["/bin/sh", "-c", shell.script(value)], cwd=tmp_path, capture_output=True, timeout=10)
    assert ran.stdout.decode() == expected(value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("template,why", [
    ("echo $(( {} + 1 ))", "evaluated as arithmetic"),
    ("cat <<'EOF'\n{}\nEOF", "quoted here-document"),
    ("echo \"{}", "unterminated \" quote"),
    ("echo '{}", "unterminated ' quote"),
])
def test_templates_where_an_item_cannot_be_data_are_refused_with_one_line(template, why, tmp_path):
    result = invoke("exec", template, ":::", "x")
    assert result.exit_code == 2
    assert why in result.stderr and result.stderr.startswith("batchkit: error:")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_backslash_makes_braces_literal():
    assert render("echo \\{} {}", "a b") == "echo \\{} 'a b'"
    out = subprocess.run(["/bin/sh", "-c", ShellCommand("printf '%s\\0' \\{} {}").script("a b")],
                         capture_output=True, timeout=10)
    assert out.stdout == b"{}\0a b\0"


def test_items_starting_with_a_dash_are_files_or_text(tmp_path, monkeypatch):
    """An item naming a file is passed as ./-name (never an option); other text as given."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-la").write_text("")
    (tmp_path / "items.txt").write_text("-la\n-n\n-5\n")
    result = invoke("exec", "printf '%s\\0' {} {name}", "--input", "items.txt", "--keep-output", "kept")
    assert result.exit_code == 0, result.output
    kept = {item: (tmp_path / "kept" / f"{output_name(item)}.out").read_bytes() for item in ("-la", "-n", "-5")}
    assert kept == {"-la": b"./-la\0-la\0", "-n": b"-n\0-n\0", "-5": b"-5\0-5\0"}


def test_ls_of_an_item_named_dash_la_lists_that_file_not_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-la").write_text("")
    (tmp_path / "other").write_text("")
    result = invoke("exec", "ls {}", ":::", "-la")
    assert result.exit_code == 0, result.output
    assert result.stdout == "./-la\n"  # `ls -la` would list the directory, `other` included


def test_file_items_starting_with_a_dash_get_dot_slash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-d").mkdir()
    (tmp_path / "-d" / "-rf").write_text("x")
    result = invoke("exec", "printf '%s\\0' {} {parent} {name}", "--files=-d")
    assert result.exit_code == 0, result.output
    assert result.stdout == "./-d/-rf\0./-d\0-rf\0"
