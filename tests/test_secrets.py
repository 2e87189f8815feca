"""Secrets never leave batchkit: environment values named like secrets, URL passwords, named options."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchkit.secrets import MASK, contains_secret, is_secret_name, redact, redact_argv, redact_text, secret_values


def test_option_and_field_names_that_hold_secrets():
    for name in ["api_key", "--access-key", "apikey", "DB_PASSWORD", "token", "client-secret", "passwd"]:
        assert is_secret_name(name), name
    for name in ["key", "keys", "--sort-keys", "monkey_business", "path", "job"]:
        assert not is_secret_name(name), name


def test_redact_masks_env_values_urls_and_named_pairs(monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "tok-123456789")
    text = "GET https://bob:hunter2@example.test/x?api_key=abc&key=item-7 with tok-123456789"
    out = redact(text)
    assert "hunter2" not in out and "tok-123456789" not in out and "api_key=abc" not in out
    assert "key=item-7" in out  # an item's key is not a credential
    assert out.count(MASK) == 3


def test_redact_dicts_by_field_name_but_keeps_item_keys():
    data = {"key": "/data/a.txt", "api_key": "s3cr3t", "args": {"password": "pw", "root": "/data"}}
    assert redact(data) == {"key": "/data/a.txt", "api_key": MASK, "args": {"password": MASK, "root": "/data"}}


# --- linear time, the "@" password, adversarial text (issue 11, items 2 and 3) ---------------------------

# Pieces that stress the patterns: runs of name characters, separators, quotes, URL parts.
_PIECES = ["y", "A", "a", "-", "_", "=", ":", ": ", "@", "://", "/", "?", "#", " ", "\n", "\t", "&", ",", ";",
           "'", '"', "*", "***", "http", "key", "KEY", "_key", "api_key", "token", "Token", "secret", "password",
           "passwd", "authorization", "Bearer ", "x://u:p@", "=x", "ß", "é", "1", "."]
# The same without anything that can make a secret: every secret word holds k, s or z, and no "@".
_PLAIN_PIECES = ["y", "A", "a", "-", "_", "=", ":", ": ", "://", "/", "?", "#", " ", "\n", "\t", "&", ",", ";",
                 "'", '"', "*", "***", "http", "tone", "pa", "word", "Bearer ", "x://u:p", "=x", "é", "1", "."]


def _text(pieces: list[str], max_repeat: int = 2000) -> st.SearchStrategy[str]:
    """Texts of up to ~20k characters: runs of repeated pieces, one after another."""
    run = st.tuples(st.sampled_from(pieces), st.integers(1, max_repeat))
    return st.lists(run, max_size=12).map(lambda runs: "".join(p * n for p, n in runs))


def _no_secret_env(mp: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if any(word in name.upper() for word in ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY")):
            mp.delenv(name)


@pytest.fixture
def clean_env(monkeypatch):
    _no_secret_env(monkeypatch)


def test_password_containing_at_sign_is_masked_whole(clean_env):
    assert redact_text("https://bob:Zq@9xK!v@svc.example.com/x") == "https://***@svc.example.com/x"
    assert redact_text("see https://u:a@b@c@d.example/x?q=1 now") == "see https://***@d.example/x?q=1 now"
    assert redact_text("ftp://u:p@ss#w@host") == "ftp://***@ss#w@host"  # '#' ends the authority


def test_userinfo_is_only_looked_for_in_the_authority(clean_env):
    for text in ["https://example.com/users/bob@example.com:8080", "https://h/x?mail=a@b&c=d:e",
                 "https://bob@example.com/x", "mailto:bob@example.com", "s3://bucket/a:b@c"]:
        assert redact_text(text) == text, text
        assert not contains_secret(text), text


def test_long_runs_of_name_characters_redact_in_passing(clean_env):
    # Each of these took seconds to hours with the backtracking patterns; pytest-timeout fails them then.
    plain = ["y" * 20_000, "upstream said: " + "A" * 20_000, "--" + "x" * 20_000 + "=", "a=" * 10_000,
             "x" * 20_000 + ":" + " " * 5_000, "http://" + "a:" * 10_000, "b" * 20_000 + "://" + "c" * 20_000,
             "key" * 7_000 + "s", "key=" * 5_000 + "1", "@" * 20_000, "://@:" * 5_000]
    for text in plain:
        assert redact_text(text) == text, text[:40]
        assert not contains_secret(text), text[:40]
    assert redact_text("y" * 20_000 + " api_key=Zq9sekrit") == "y" * 20_000 + " api_key=***"
    assert redact_text("password:" * 5_000 + " x") == "password:***"  # a chain of names takes the value after it
    assert redact_text("http://" + "a:" * 10_000 + "@h/") == "http://***@h/"


def test_named_values_in_the_forms_people_write(clean_env):
    cases = {
        "--db-password=hunter2 --sort-keys=1": "--db-password=*** --sort-keys=1",
        "x=password=hunter2": "x=password=***",
        "api_key = abc123": "api_key = ***",
        "{'password': 'hunter 2', 'user': 'bob'}": "{'password': '***', 'user': 'bob'}",
        '{"api_key":"abc def","key":"item-7"}': '{"api_key":"***","key":"item-7"}',
        "Authorization: Bearer eyJhbGciOi.x.y": "Authorization: Bearer ***",
        "headers={'Authorization': 'Basic dXNlcjpwdw=='}": "headers={'Authorization': '***'}",
        "paßword=hunter2": "paßword=***",  # str.upper() makes PASSWORD of it
        "password=https://u:pa&ss@h/x&y=1": "password=***&y=1",  # a URL's authority is masked whole
        "api_key://u:pa&ss@h/x": "api_key:***",
        # A value that is itself a name and a separator takes the value after it.
        "api_key= token: tok_9f8e7d": "api_key= ***",
        "missing token: db_password = hunter2 (retry)": "missing token: *** (retry)",
    }
    for text, want in cases.items():
        assert redact_text(text) == want, text
        assert contains_secret(text), text
        assert redact_text(want) == want and not contains_secret(want), want
    for text in ["sort_keys=true", "key=item-7", r"C:\Users\bob\api_key.txt", "at 12:34:56", "monkey=1"]:
        assert redact_text(text) == text and not contains_secret(text), text


def test_secret_values_follow_the_environment(monkeypatch):
    monkeypatch.setenv("BK_TEST_API_TOKEN", "first-value-1")
    assert "first-value-1" in secret_values()
    assert redact_text("a first-value-1 b") == "a *** b"
    monkeypatch.setenv("BK_TEST_API_TOKEN", "second-value-2")
    assert "first-value-1" not in secret_values() and "second-value-2" in secret_values()
    assert redact_text("a first-value-1 b") == "a first-value-1 b"
    assert contains_secret("x second-value-2") and not contains_secret("x first-value-1")
    monkeypatch.delenv("BK_TEST_API_TOKEN")
    assert "second-value-2" not in secret_values()
    assert redact_text("x second-value-2") == "x second-value-2"
    # A name added while another goes (same number of variables) is still noticed.
    monkeypatch.setenv("BK_TEST_OTHER", "1")
    secret_values()
    monkeypatch.delenv("BK_TEST_OTHER")
    monkeypatch.setenv("BK_TEST_SECRET", "third-value-3")
    assert redact_text("third-value-3") == MASK
    assert secret_values({"DB_PASSWORD": "pw-long", "PATH": "/bin", "API_KEY": "abc"}) == ["pw-long"]


def test_contains_secret_is_false_for_file_paths_and_redacted_text(clean_env, monkeypatch):
    paths = "\n".join(f"/data/run-{i}/part_{i}.key.txt" for i in range(1000))
    assert not contains_secret(paths)
    assert not contains_secret("password=*** https://***@h/x Authorization: Bearer ***")
    monkeypatch.setenv("BK_TEST_TOKEN", "run-999")
    assert contains_secret(paths)


def test_redact_argv_masks_option_values_urls_and_env_values(clean_env, monkeypatch):
    argv = ["run", "job.py", "--api-token", "tok_live_abcdef123456", "--url", "https://admin:Pa55word@h/x"]
    assert redact_argv(argv) == ["run", "job.py", "--api-token", MASK, "--url", "https://***@h/x"]
    assert argv[3] == "tok_live_abcdef123456"  # the caller's list is left alone
    assert redact_argv(["run", "j", "--db-password=s3cr3t", "--input", "in.txt", "--workers", "2"]) == [
        "run", "j", "--db-password=***", "--input", "in.txt", "--workers", "2"]
    # A secret-named flag followed by another long option: that option is not its value.
    assert redact_argv(["--save-password", "--workers", "2"]) == ["--save-password", "--workers", "2"]
    # The value may look like an option, as click takes it.
    assert redact_argv(["--token", "-Xy_9abc"]) == ["--token", MASK]
    assert redact_argv(["--api-key", ""]) == ["--api-key", ""]
    assert redact_argv(["env", "API_TOKEN=abc123", "--sort-keys", "x"]) == ["env", "API_TOKEN=***", "--sort-keys", "x"]
    monkeypatch.setenv("BK_TEST_SECRET", "from-the-env-42")
    assert redact_argv(["run", "j", "--note", "from-the-env-42"]) == ["run", "j", "--note", MASK]
    assert redact_argv(["--api-token"]) == ["--api-token"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_text(_PIECES))
def test_redaction_is_idempotent_and_contains_secret_agrees(text):
    with pytest.MonkeyPatch.context() as mp:
        _no_secret_env(mp)
        once = redact_text(text)
        assert redact_text(once) == once
        assert contains_secret(text) == (once != text)
        assert not contains_secret(once)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_text(_PLAIN_PIECES))
def test_text_without_secrets_is_unchanged(text):
    with pytest.MonkeyPatch.context() as mp:
        _no_secret_env(mp)
        assert redact_text(text) == text
        assert not contains_secret(text)


_NAMED_FORMS = ["api_key={}", "--db-password={}", "token: {}", "DB_PASSWORD = {}", "'password': '{}'",
                '"client_secret":"{}"', "Authorization: Bearer {}", "x-api-key:{}", "password={}&next=1"]
_URL_FORMS = ["https://user:{}@db.example.com/x", "postgres://a:{}@h:5432", "x://u:{}@h?q=1"]
_VALUE = st.text("abcXYZ0189._-+!@%", min_size=4, max_size=30).map(lambda s: "Zq9" + s)
# A URL password may hold anything but / ? # and whitespace (they end the authority).
_URL_PASSWORD = st.text("abc019@!:&;,'\"=*%$", min_size=4, max_size=30).map(lambda s: "Zq9" + s)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_text(_PIECES, 500), after=_text(_PIECES, 500), form=st.sampled_from(_NAMED_FORMS), value=_VALUE)
def test_a_named_secret_never_survives(before, after, form, value):
    with pytest.MonkeyPatch.context() as mp:
        _no_secret_env(mp)
        text = f"{before} {form.format(value)} {after}"
        out = redact_text(text)
        assert value not in out
        assert contains_secret(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_text(_PIECES, 500), after=_text(_PIECES, 500), form=st.sampled_from(_URL_FORMS),
       password=_URL_PASSWORD)
def test_a_url_password_never_survives(before, after, form, password):
    with pytest.MonkeyPatch.context() as mp:
        _no_secret_env(mp)
        out = redact_text(f"{before} {form.format(password)} {after}")
        assert password not in out
        assert "Zq9" not in out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_text(_PIECES, 500), after=_text(_PIECES, 500),
       value=st.text("abcXYZ0189._-+!@%:=/&' ", min_size=4, max_size=30).map(lambda s: "Zq9" + s))
def test_an_environment_secret_never_survives(before, after, value):
    with pytest.MonkeyPatch.context() as mp:
        _no_secret_env(mp)
        mp.setenv("BK_TEST_PRIVATE_KEY", value)
        text = before + value + after
        out = redact_text(text)
        assert value not in out
        assert contains_secret(text) and redact_text(out) == out
