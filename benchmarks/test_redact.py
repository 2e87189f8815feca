"""pytest-benchmark suite of redaction: ``redact_text`` on adversarial text (issue 11)."""

from __future__ import annotations

import pytest

from batchkit.secrets import redact_text

from .redact import FAMILIES, SIZES


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_redact(benchmark, sizes, family):
    n = SIZES[0] if sizes.name == "smoke" else SIZES[-1]
    text = FAMILIES[family][1](n)
    benchmark.group = f"redact {n:,} chars"
    out = benchmark.pedantic(redact_text, args=(text,), rounds=sizes.rounds, iterations=1)
    assert redact_text(out) == out  # redacting twice changes nothing
