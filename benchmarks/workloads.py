"""The functions every peer runs, defined once so every peer runs exactly the same code.

They live in an importable module (not ``__main__``) so that ``multiprocessing``, loky, Dask
and mpire all send them by reference: no peer pays for pickling code by value.
"""

from __future__ import annotations

import time


def double(x: int) -> int:
    """The tiny item: nothing but per-item overhead is measured."""
    return x * 2


def spin(n: int) -> int:
    """CPU-bound item: ``n`` iterations of pure-Python arithmetic (see :func:`calibrate_spin`)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def nap(seconds: float) -> float:
    """I/O-bound item: sleeps (releasing the GIL), as a network or disk wait would."""
    time.sleep(seconds)
    return seconds


def calibrate_spin(seconds: float, rounds: int = 5) -> int:
    """How many :func:`spin` iterations take ``seconds`` on this machine (median of ``rounds``)."""
    n = 20_000
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        spin(n)
        times.append(time.perf_counter() - t0)
    return max(1, int(n * seconds / sorted(times)[len(times) // 2]))


def sha256_file(path: str) -> str:
    """A small file's sha256 (the checksum job's work, for runs over a file tree)."""
    import hashlib
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        return hashlib.sha256(os.read(fd, 1 << 20)).hexdigest()
    finally:
        os.close(fd)
