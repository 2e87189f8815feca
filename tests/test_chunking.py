"""The chunker: every item exactly once, in order, chunk sizes within bounds (property tests)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from batchkit.engine.chunking import GROWTH, MAX_UNKNOWN, Chunker, split


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 3000), size=st.one_of(st.just("auto"), st.integers(1, 500)),
       workers=st.integers(1, 64), known=st.booleans(),
       timings=st.lists(st.floats(1e-7, 5.0), min_size=1, max_size=50))
def test_split_yields_every_item_once_in_order_within_bounds(n, size, workers, known, timings):
    chunker = Chunker(size, workers, n if known else None)
    items = range(n)
    chunks = []
    for i, chunk in enumerate(split(iter(items) if not known else items, chunker)):
        chunks.append(chunk)
        assert 1 <= len(chunk) <= (size if size != "auto" else chunker.cap)
        chunker.observe(len(chunk), timings[i % len(timings)] * len(chunk) / 10)
    assert [x for c in chunks for x in c] == list(items)


def test_auto_grows_for_tiny_items_but_caps_for_load_balance():
    chunker = Chunker("auto", workers=2, total=1_000_000)
    sizes = []
    for _ in range(10):
        sizes.append(chunker.next_size())
        chunker.observe(chunker.next_size(), chunker.next_size() * 1e-7)
    assert sizes[0] == 1
    assert all(b <= a * GROWTH for a, b in zip(sizes, sizes[1:]))
    assert sizes[-1] == 1_000_000 // 16  # len / (8 * workers): half Pool.map's chunk


def test_auto_aims_at_a_fraction_of_a_second_for_slow_items():
    chunker = Chunker("auto", workers=2, total=None)
    for _ in range(10):
        chunker.observe(chunker.next_size(), chunker.next_size() * 0.01)  # 10 ms per item
    assert 20 <= chunker.next_size() <= 200  # 0.2 - 2 s per chunk


def test_auto_shrinks_when_items_slow_down():
    chunker = Chunker("auto", workers=2, total=None)
    for _ in range(6):
        chunker.observe(chunker.next_size(), chunker.next_size() * 1e-5)
    big = chunker.next_size()
    for _ in range(6):
        chunker.observe(chunker.next_size(), chunker.next_size() * 0.5)  # now 0.5 s per item
    assert chunker.next_size() < big and chunker.next_size() <= 4


def test_unknown_length_never_exceeds_the_memory_cap():
    chunker = Chunker("auto", workers=2, total=None)
    for _ in range(20):
        chunker.observe(chunker.next_size(), 1e-9)
    assert chunker.next_size() == MAX_UNKNOWN


def test_one_fast_first_item_cannot_make_a_huge_chunk():
    chunker = Chunker("auto", workers=2, total=None)
    chunker.observe(1, 1e-7)
    assert chunker.next_size() <= GROWTH


def test_a_small_input_of_fast_items_is_not_cut_below_a_round_trips_worth():
    chunker = Chunker("auto", workers=2, total=10)
    assert chunker.next_size() == 1
    chunker.observe(1, 2e-6)  # the first item came back: two microseconds
    assert chunker.next_size() >= 10  # the rest in one chunk, not one item per task
    slow = Chunker("auto", workers=2, total=10)
    slow.observe(1, 0.5)  # half a second per item: one per chunk keeps both workers busy
    assert slow.next_size() == 1
