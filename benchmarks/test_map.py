"""pytest-benchmark suites of the map-style scenarios: tiny, Dask, CPU-bound and I/O-bound items.

One benchmark per (scenario, contender), grouped by scenario; the item count is in the id and
in ``extra_info``, since contenders that pay a task per item run on fewer items.
"""

from __future__ import annotations

from functools import cache

import pytest

from .conftest import SIZES
from .scenarios import MAP_SCENARIOS, MapScenario


@cache
def scenario(key: str) -> MapScenario:
    """The scenario ``key`` at this session's sizes (the CPU one calibrates once)."""
    return MAP_SCENARIOS[key](SIZES)


CASES = [(key, peer, n) for key in MAP_SCENARIOS for peer, n in scenario(key).entries]


@pytest.mark.parametrize(("key", "peer", "n"), CASES, ids=[f"{k}-{p.name}-{n}" for k, p, n in CASES])
def test_map(benchmark, shared, key, peer, n):
    sc = scenario(key)
    missing = peer.missing()
    if missing:
        pytest.skip(f"{missing} is not installed")
    items = sc.items(n)
    benchmark.group = key
    benchmark.extra_info.update(items=n, workers=sc.workers, pool_warm=peer.warm)
    with peer.open(shared, sc.workers) as go:
        go(sc.fn, items[:sc.warmup])  # pool started and warm before the clock, when it is reused
        rounds = SIZES.short_rounds if sc.short else SIZES.rounds
        out = benchmark.pedantic(go, args=(sc.fn, items), rounds=rounds, iterations=1)
    assert len(out) == n
    assert out[0] == sc.fn(items[0]) and out[-1] == sc.fn(items[-1])
