"""The command line: a thin click layer over the Python API. ``main`` is the console script.

Sub-commands live one per module and are imported only when invoked, so ``batchkit --help``
stays fast and never loads loky, joblib, dask or distributed.
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
