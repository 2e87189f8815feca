"""The engine: one loop, shared by every backend, that cuts items into chunks, dispatches them,
recovers from crashed workers and hands finished chunks on (see :mod:`batchkit.engine.loop`)."""

from .loop import ACTIVE, Engine, MaxFailures, parse_max_failures

__all__ = ["ACTIVE", "Engine", "MaxFailures", "parse_max_failures"]
