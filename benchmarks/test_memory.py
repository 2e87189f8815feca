"""pytest-benchmark suite of the memory scenario: ``bk.imap`` over a long generator, one process each.

The timed figure is the whole subprocess; its parent peak RSS is in ``extra_info["peak_mb"]``.
"""

from __future__ import annotations

import pytest

from . import rss
from .conftest import SIZES

CASES = [("batchkit", SIZES.rss[0]), ("batchkit", SIZES.rss[1]), ("pool", SIZES.rss[1])]
if SIZES.name == "smoke":
    del CASES[0]  # one fresh process less in CI: the smaller size exercises the same code


@pytest.mark.parametrize(("mode", "n"), CASES, ids=[f"{m}-{n}" for m, n in CASES])
def test_imap_peak_rss(benchmark, mode, n):
    benchmark.group = "rss"
    result = benchmark.pedantic(rss.measure, args=(mode, n), rounds=1, iterations=1)
    benchmark.extra_info.update(items=n, peak_mb=result["peak_mb"])
    assert result["seen"] == n and result["failed"] == 0
    assert result["peak_mb"] > 0
