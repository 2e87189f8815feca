"""Writing one run into the journal: :class:`RunRecord`, one transaction per finished chunk."""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from .errors import BackendError
from .report import ChunkOutcomes
from .secrets import redact

if TYPE_CHECKING:
    from .journal import Journal

VALUE_SUMMARY = 200


class RunRecord:
    """One run being written: :meth:`record` each finished chunk, then :meth:`end`.

    Chunks are written by a background thread, one transaction each, so the parent keeps
    dispatching while SQLite works (the sqlite3 module lets go of the GIL while it writes).
    At most ``QUEUED`` finished chunks wait for it: what a crash can lose is still bounded
    by the chunks in flight, and :meth:`end` writes everything before closing the run.
    """

    QUEUED = 1

    def __init__(self, journal: Journal, run_id: int, job: str, done: set[str], resumed: bool) -> None:
        self.journal = journal
        self.id = run_id
        self.job = job
        self.done = done
        self.resumed = resumed
        self._queue: queue.Queue | None = None
        self._writer: threading.Thread | None = None
        self._failure: BaseException | None = None

    def is_done(self, key: str) -> bool:
        """Whether the item with ``key`` finished in an earlier attempt of this run."""
        return key in self.done

    def record(self, chunk: ChunkOutcomes) -> None:
        """Queue a finished chunk to be written in one transaction (blocks while one waits)."""
        self._raise_if_failed()
        if self._writer is None:
            self._queue = queue.Queue(maxsize=self.QUEUED)
            self._writer = threading.Thread(target=self._write_loop, name="batchkit-journal", daemon=True)
            self._writer.start()
        assert self._queue is not None
        self._queue.put(chunk)

    def flush(self) -> None:
        """Wait until every queued chunk is written; raise if writing failed."""
        if self._writer is not None:
            assert self._queue is not None
            self._queue.put(None)
            self._writer.join()
            self._writer = self._queue = None
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise BackendError(f"journal {self.journal.path} could not be written: {self._failure}; "
                               "resume once it is fixed, or use --no-journal") from self._failure

    def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self._failure is None:
                try:
                    self._write(chunk)
                except BaseException as exc:  # reported to the run by the next record() or flush()
                    self._failure = exc

    def _write(self, chunk: ChunkOutcomes) -> None:
        now = time.time()
        run_id, keys, values, durations = self.id, chunk.key_list(), chunk.values, chunk.durations
        errors, attempts = chunk.errors, chunk.attempts
        indices = chunk.indices or range(chunk.start, chunk.start + len(chunk))
        # Binding a parameter costs about as much as storing it, so the two values shared by the
        # whole chunk (run id, finish time: numbers we made, never user data) go in as literals.
        rows = zip(keys, indices, _flags(len(chunk), errors), _summaries(values, errors),
                   _attempts(len(chunk), attempts), durations)
        failed = [(keys[pos], err.type, err.kind, redact(err.message), redact(err.traceback), err.step)
                  for pos, err in errors.items()]
        head = f"{int(run_id)}, "
        # A fresh run has no rows to replace; plain INSERT is the cheaper statement.
        verb = "INSERT OR REPLACE" if self.resumed else "INSERT"
        db = self.journal.db
        with self.journal._transaction():
            if self.resumed:
                db.executemany(f"DELETE FROM failures WHERE run_id={int(run_id)} AND key=?", [(k,) for k in keys])
            db.executemany(f"{verb} INTO items VALUES ({head}?,?,?,?,?,?,{float(now)!r})", rows)
            if failed:
                db.executemany(f"{verb} INTO failures VALUES ({head}?,?,?,?,?,?)", failed)
            db.execute("UPDATE runs SET updated=? WHERE id=?", (now, run_id))

    def end(self, state: str, *, skipped: int, elapsed: float, message: str | None = None,
            total: int | None = None) -> dict:
        """Close the run with ``state`` once every chunk is written; counts come from the items."""
        try:
            self.flush()
        except BackendError:
            if state == "succeeded":
                raise
        db = self.journal.db
        succeeded, failed = db.execute(
            "SELECT COALESCE(SUM(ok), 0), COALESCE(SUM(1 - ok), 0) FROM items WHERE run_id=?",
            (self.id,)).fetchone()
        now = time.time()
        with self.journal._transaction():
            db.execute(
                "UPDATE runs SET state=?, updated=?, ended=?, succeeded=?, failed=?, skipped=?, "
                "elapsed=elapsed+?, message=?, total=COALESCE(?, total) WHERE id=?",
                (state, now, now, succeeded, failed, skipped, elapsed,
                 redact(message) if message else None, total, self.id))
        return self.journal.run(self.id) or {}


# The columns of a chunk's rows are built whole, with C-level list operations and map(), rather
# than one Python tuple per item: on a 2-core machine with both cores hashing, the journal's own
# CPU time is what it costs the run.


def _flags(n: int, errors: dict) -> list:
    ok = [1] * n
    for pos in errors:
        ok[pos] = 0
    return ok


def _attempts(n: int, attempts: dict) -> list:
    counts = [1] * n
    for pos, count in attempts.items():
        counts[pos] = count
    return counts


def _summaries(values: list, errors: dict) -> list:
    try:
        texts = list(map(repr, values))
    except Exception:  # a value whose repr() fails: fall back to one at a time
        texts = [_summary(v) for v in values]
    if max(map(len, texts), default=0) > VALUE_SUMMARY:
        texts = [t if len(t) <= VALUE_SUMMARY else t[: VALUE_SUMMARY - 3] + "..." for t in texts]
    for pos in errors:
        texts[pos] = None  # a failed item has an error, not a value
    return texts


def _summary(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= VALUE_SUMMARY else text[: VALUE_SUMMARY - 3] + "..."
