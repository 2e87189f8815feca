"""Redaction cost: ``redact_text`` on adversarial text of 1k, 10k and 100k characters (issue 11).

    python3 -m benchmarks.redact            # prints the table
    python3 -m benchmarks.run --only redact # the same, as a section of the results table

Redaction runs on every error message, log line and journal chunk, so it must be linear in the
length of the text: each family of adversarial text below is timed at three sizes, and 100k
characters must cost about 10 × what 10k cost. The families aim at what made the old patterns
backtrack (runs of name characters before a separator, long URL schemes and authorities) and at
what costs the new scan a Python step each (many short ``name=value`` pairs); each starts with
``api_key=x``, so the whole text goes through the full pattern. A typical error message and
``contains_secret`` over a journal chunk's keys are timed for scale. Figures are the best of the
rounds: the work is deterministic, and the best round is the one other load on the machine
disturbed least.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Callable

from .measure import Target, Timing

SIZES = (1_000, 10_000, 100_000)
LIMIT_MS = 50.0  # 100k adversarial characters
LIMIT_RATIO = 15.0  # 100k / 10k; linear is 10

_PIECES = ["y", "A", "-", "_", "=", ":", ": ", "@", "://", "/", " ", "\n", "&", "'", '"', "key", "token",
           "password", "api_key", "Authorization", "Bearer ", "x://u:p@", "ß", "1"]


def _mixed(n: int) -> str:
    rng = random.Random(11)
    out, size = ["api_key=x "], 10
    while size < n:
        piece = rng.choice(_PIECES) * rng.randint(1, 40)
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _fill(unit: str, n: int, head: str = "", tail: str = "") -> str:
    # Each text starts with a secret name, so redaction reads all of it with the full pattern (text
    # without any secret name costs a few C-level scans and is not adversarial).
    head = "api_key=x " + head
    return head + unit * max(1, (n - len(head) - len(tail)) // len(unit)) + tail


# name -> (what it is, text of about n characters)
FAMILIES: dict[str, tuple[str, Callable[[int], str]]] = {
    "name run": ("`upstream said: ` + `A` × n (the issue's error message)",
                 lambda n: _fill("A", n, "upstream said: ")),
    "secret name run": ("`api_key` repeated, then `=x`", lambda n: _fill("api_key", n, tail="=x")),
    "short pairs": ("`a=` × n/2", lambda n: _fill("a=", n)),
    "candidate pairs": ("`key=` × n/4: each a name to judge", lambda n: _fill("key=", n)),
    "secret chain": ("`token: ` × n/7", lambda n: _fill("token: ", n)),
    "long scheme": ("`a` × n, then `://u:p@h`", lambda n: _fill("a", n, tail="://u:p@h")),
    "long authority": ("`http://` + `a:` × n/2 + `@h`", lambda n: _fill("a:", n, "http://", "@h")),
    "nested URLs": ("`x://u:p@` × n/8", lambda n: _fill("x://u:p@", n)),
    "quotes": ("`password=\"` + `a'` × n/2", lambda n: _fill("a'", n, 'password="')),
    "mixed": ("random runs of separators, quotes, URL parts and secret names", _mixed),
}

TYPICAL = ("ValueError: upstream said: connection refused for https://svc.example.com/api/v2/items?id=123"
           "&key=item-7 after 3 retries (timeout=30s, host=db-1.internal:5432, user=batch, attempt=3/3)")
CHUNK_KEYS = "\n".join(f"/data/incoming/2026-11-{i % 28 + 1:02d}/part-{i:06d}.csv" for i in range(100))


def time_call(fn: Callable[[str], object], text: str, rounds: int) -> list[float]:
    """Seconds per call of ``fn(text)``, ``rounds`` times (short calls are repeated to last ≥ 2 ms)."""
    t0 = time.perf_counter()
    fn(text)
    once = time.perf_counter() - t0
    repeat = max(1, int(0.002 / once)) if once > 0 else 1000
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn(text)
        times.append((time.perf_counter() - t0) / repeat)
    return times


def _us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.0f}" if us >= 100 else f"{us:.3g}"


def run(rounds: int, log: Callable[[str], None]
        ) -> tuple[list[str], list[list[str]], list[Target], list[Timing], list[str]]:
    """Time every family at every size: the table's header and rows, the two targets, the raw
    timings, and notes with the typical message and the chunk keys."""
    from batchkit.secrets import contains_secret, redact_text

    header = ["input", "what", *[f"µs at {n // 1000}k chars" for n in SIZES], "100k ÷ 10k"]
    rows, timings = [], []
    largest: dict[str, float] = {}
    ratios: dict[str, float] = {}
    log(f"  redact_text: {len(FAMILIES)} inputs x {len(SIZES)} sizes x {rounds} rounds")
    for name, (about, make) in FAMILIES.items():
        best = {}
        for n in SIZES:
            text = make(n)
            t = Timing(f"redact_text {name} {n}", len(text), time_call(redact_text, text, rounds), ours=True)
            timings.append(t)
            best[n] = min(t.times)
        largest[name] = best[SIZES[-1]]
        ratios[name] = best[SIZES[-1]] / best[SIZES[-2]]
        rows.append([name, about, *[_us(best[n]) for n in SIZES], f"{ratios[name]:.1f}×"])
    typical = Timing("redact_text typical message", len(TYPICAL), time_call(redact_text, TYPICAL, rounds), ours=True)
    keys = Timing("contains_secret chunk keys", 100, time_call(contains_secret, CHUNK_KEYS, rounds), ours=True)
    timings += [typical, keys]
    notes = [f"Best of {rounds} rounds. Every input starts with `api_key=x `, so all of it is read by the "
             "full pattern.",
             f"A typical error message ({len(TYPICAL)} characters, a URL and `key=`, no secret): "
             f"{_us(min(typical.times))} µs per `redact_text`.",
             f"`contains_secret` over a journal chunk's keys (100 file paths joined, {len(CHUNK_KEYS):,} "
             f"characters): {_us(min(keys.times))} µs per chunk."]
    slowest = max(largest, key=largest.__getitem__)
    steepest = max(ratios, key=ratios.__getitem__)
    targets = [
        Target(f"redact_text on 100k adversarial characters ≤ {LIMIT_MS:g} ms (slowest of {len(FAMILIES)} inputs)",
               largest[slowest] * 1000, LIMIT_MS, "<=", "ms", f"slowest: {slowest}"),
        Target(f"redact_text time at 100k ÷ at 10k characters ≤ {LIMIT_RATIO:g} (linear: 10)", ratios[steepest],
               LIMIT_RATIO, "<=", "×", f"steepest: {steepest}"),
    ]
    return header, rows, targets, timings, notes


def main() -> int:
    """Print the redaction table and its targets."""
    from .table import markdown_table, targets_table

    header, rows, targets, _, notes = run(5, lambda line: print(line, file=sys.stderr))
    print(markdown_table(header, rows))
    print()
    print("\n".join(f"- {n}" for n in notes))
    print()
    print(targets_table(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
