"""Secrets never leave batchkit: environment values named like secrets, URL passwords, named options."""

from __future__ import annotations

from batchkit.secrets import MASK, is_secret_name, redact


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
