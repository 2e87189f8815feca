"""A chunk's item rows packed into one JSON text: read back exactly by Python, and one row per
item through the journal's ``items`` view."""

from __future__ import annotations

import os
import sqlite3
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

import batchkit as bk
from batchkit.state.journal import Journal
from batchkit.state.rowpack import VIEW, pack, row_keys, unpack

# Text SQLite's JSON functions give back whole: no lone surrogates (those only come from
# undecodable file names) and no NUL (SQLite's C strings end there; no file name has one).
# The journal's own reads use json.loads, which gives back those too: see the tests below.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


def _view_rows(text: str, first_idx: int | None) -> list[tuple]:
    db = sqlite3.connect(":memory:")
    db.executescript("CREATE TABLE chunks (id INTEGER PRIMARY KEY, run_id, first_idx, n, failed, finished, rows);"
                     + VIEW)
    db.execute("INSERT INTO chunks VALUES (1, 7, ?, 0, 0, 1.5, ?)", (first_idx, text))
    return db.execute("SELECT run_id, key, idx, ok, value, attempts, duration, finished FROM items").fetchall()


def test_plain_rows_pack_to_short_json_rows_and_read_back_exactly():
    keys = ["/data/a.dat", "/data/b.dat"]
    values = ["'3f2a'", "None"]
    text = pack(keys, values, array("d", [0.0123456, 2e-6]))
    assert text == '[["/data/a.dat","\'3f2a\'",12345],["/data/b.dat","None",2]]'
    assert list(unpack(text, 10)) == [("/data/a.dat", 10, "'3f2a'", 1, 0.012345), ("/data/b.dat", 11, "None", 1, 2e-6)]
    assert row_keys(text) == keys
    assert _view_rows(text, 10) == [(7, "/data/a.dat", 10, 1, "'3f2a'", 1, 0.012345, 1.5),
                                    (7, "/data/b.dat", 11, 1, "None", 1, 2e-6, 1.5)]


def test_failures_positions_and_attempts_use_the_long_form():
    text = pack(["a", "b", "c"], ["1", None, "3"], [0.1, 0.2, 0.3], indices=[4, 9, 12], attempts={2: 3})
    assert list(unpack(text, None)) == [("a", 4, "1", 1, 0.1), ("b", 9, None, 1, 0.2), ("c", 12, "3", 3, 0.3)]
    assert [(k, i, ok, a) for _, k, i, ok, _, a, _, _ in _view_rows(text, None)] == [
        ("a", 4, 1, 1), ("b", 9, 0, 1), ("c", 12, 1, 3)]


def test_names_that_need_escaping_survive_both_readers():
    keys = ['say "hi".txt', "back\\slash", "new\nline", "tab\t", "café ☕", "\x00nul"]
    values = [repr(k) for k in keys]
    text = pack(keys, values, [0.0] * len(keys))
    assert [r[0] for r in unpack(text, 0)] == keys and [r[2] for r in unpack(text, 0)] == values
    assert [r[1] for r in _view_rows(text, 0)][:-1] == keys[:-1]  # the view stops a text at NUL


def test_undecodable_file_names_round_trip_through_python():
    key = os.fsdecode(b"bad\xff.dat")  # a lone surrogate, which SQLite text cannot hold
    text = pack([key, "ok"], [None, "1"], [0.5, 0.5])
    text.encode()  # the packed text itself is valid UTF-8
    assert [r[0] for r in unpack(text, 0)] == [key, "ok"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(TEXT, st.one_of(st.none(), TEXT), st.floats(0, 1e4), st.integers(1, 5)),
                max_size=20), st.booleans())
def test_any_rows_read_back_exactly_from_python_and_the_view(rows, scattered):
    keys = [r[0] for r in rows]
    values = [r[1] for r in rows]
    durations = [r[2] for r in rows]
    indices = [3 * i + 1 for i in range(len(rows))] if scattered else None
    attempts = {pos: r[3] for pos, r in enumerate(rows) if r[3] != 1}
    text = pack(keys, values, durations, indices, attempts)
    first = None if scattered else 5
    got = list(unpack(text, first))
    want_idx = indices if scattered else [5 + i for i in range(len(rows))]
    assert [(k, i, v, a) for k, i, v, a, _ in got] == [
        (k, i, v, attempts.get(pos, 1)) for pos, (k, i, v) in enumerate(zip(keys, want_idx, values))]
    # Durations are kept in whole microseconds.
    assert all(abs(d - w) < 1e-6 + 1e-12 * w for (_, _, _, _, d), w in zip(got, durations))
    view = _view_rows(text, first)
    assert [(k, i, ok, v, a) for _, k, i, ok, v, a, _, _ in view] == [
        (k, i, int(v is not None), v, a) for k, i, v, a, _ in got]


def test_a_journal_holds_a_chunk_row_per_chunk_and_an_item_row_per_item(tmp_path):
    db = tmp_path / "j.db"
    report = bk.run(lambda x: 10 // x, range(-5, 5), backend="thread", chunk_size=4, journal=db,
                    progress=False, name="div")
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*), SUM(n), SUM(failed) FROM chunks").fetchone() == (3, 10, 1)
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT key), SUM(ok) FROM items WHERE run_id=?",
                       (report.run_id,)).fetchone() == (10, 10, 9)
    assert con.execute("SELECT idx, value FROM items WHERE ok=0").fetchall() == [(5, None)]
    with Journal(db) as j:
        assert j.counts(report.run_id) == (10, 1, 0)


def test_undecodable_file_name_is_journaled_and_skipped_on_resume(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    bad = os.fsencode(root) + b"/bad\xff.dat"
    with open(bad, "wb") as f:
        f.write(b"x")
    (root / "good.dat").write_text("y")
    db = tmp_path / "j.db"
    calls = []

    def size(path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the first run stops at its second file
        return os.path.getsize(path)

    walk = bk.files(root, as_str=True)
    try:
        bk.run(size, walk, backend="serial", chunk_size=1, journal=db, progress=False, name="sizes")
    except KeyboardInterrupt:
        pass
    first = calls[0]
    report = bk.run(size, walk, backend="serial", chunk_size=1, journal=db, resume=True, progress=False,
                    name="sizes")
    assert report.skipped == 1 and calls[2:] == calls[1:2]  # only the unfinished file ran again
    assert sorted(o.item for o in report.outcomes) == sorted([first, calls[1]])
    with Journal(db) as j:
        (run,) = j.runs()
        keys = sorted(i["key"] for i in j.items(run["id"]))
    assert run["state"] == "succeeded" and keys == sorted([first, calls[1]])
    assert os.fsdecode(bad) in keys


def test_failure_of_an_undecodable_file_name_keeps_its_error(tmp_path):
    key = os.fsdecode(b"/nowhere/bad\xff.dat")
    db = tmp_path / "j.db"

    def fail(path):
        raise FileNotFoundError(f"no such file: {path}")

    report = bk.run(fail, [key], backend="serial", journal=db, progress=False, name="bad")
    with Journal(db) as j:
        (item,) = j.items(report.run_id, failed_only=True)
    assert item["key"] == key and item["error_type"] == "FileNotFoundError"
    assert "bad\\udcff.dat" in item["message"]  # the message is text: the odd byte is escaped


PLAIN = st.one_of(st.text(max_size=40), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                  st.booleans(), st.none())


@settings(max_examples=300)
@given(st.lists(PLAIN, max_size=20))
def test_summaries_of_plain_literals_are_their_exact_values(values):
    from batchkit.state.rowpack import exact_in_summaries, literal, summaries

    texts = summaries(values, {})
    assert exact_in_summaries(values, texts, {})  # short plain literals: stored once, in the rows
    back = [literal(t) for t in texts]
    assert back == values and [type(v) for v in back] == [type(v) for v in values]


def test_values_whose_summary_is_not_exact_keep_their_pickle():
    from batchkit.state.rowpack import exact_in_summaries, summaries

    for values in (["x" * 300], [float("nan")], [10 ** 700], [b"bytes"], [("a", 1)], [bk.Retry()]):
        try:
            texts = summaries(values, {})
        except ValueError:  # repr of a huge int
            texts = ["<int>"]
        assert not exact_in_summaries(values, texts, {})
    # a failed item's missing value does not count
    assert exact_in_summaries(["a", None], ["'a'", None], {1: "error"})


@settings(max_examples=300)
@given(st.lists(st.tuples(TEXT, st.text(max_size=40), st.floats(0, 10)), min_size=1, max_size=20))
def test_plain_strings_pack_exactly_as_their_summaries_would(rows):
    from batchkit.state.rowpack import pack_strings, summaries

    keys, values, durations = (list(x) for x in zip(*rows))
    fast = pack_strings(keys, values, durations)
    general = pack(keys, summaries(values, {}), durations)
    assert fast is None or fast == general
    if all(v.isascii() and v.isprintable() and not set(v) & set("'\"\\") for v in values + keys):
        assert fast == general  # the common case takes the fast path
