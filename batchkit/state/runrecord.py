"""Writing one run into the journal: :class:`RunRecord`, one transaction per finished chunk."""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING

from ..errors import BackendError
from ..report import ChunkOutcomes
from ..secrets import redact
from .rowpack import pack, summaries

if TYPE_CHECKING:
    from .journal import Journal



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
        keys, errors = chunk.key_list(), chunk.errors
        rows = pack(keys, summaries(chunk.values, errors), chunk.durations, chunk.indices, chunk.attempts)
        failed = [(self.id, db_key(keys[pos]), err.type, err.kind, _text(redact(err.message)),
                   _text(redact(err.traceback)), err.step) for pos, err in errors.items()]
        db = self.journal.db
        with self.journal._transaction():
            db.execute("INSERT INTO chunks (run_id, first_idx, n, failed, finished, rows) VALUES (?, ?, ?, ?, ?, ?)",
                       (self.id, chunk.start if chunk.indices is None else None, len(chunk), len(errors), now, rows))
            if failed:
                db.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?, ?)", failed)
            db.execute("UPDATE runs SET updated=? WHERE id=?", (now, self.id))

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
            "SELECT COALESCE(SUM(n - failed), 0), COALESCE(SUM(failed), 0) FROM chunks WHERE run_id=?",
            (self.id,)).fetchone()
        now = time.time()
        with self.journal._transaction():
            db.execute(
                "UPDATE runs SET state=?, updated=?, ended=?, succeeded=?, failed=?, skipped=?, "
                "elapsed=elapsed+?, message=?, total=COALESCE(?, total) WHERE id=?",
                (state, now, now, succeeded, failed, skipped, elapsed,
                 redact(message) if message else None, total, self.id))
        return self.journal.run(self.id) or {}


def _text(text: str | None) -> str | None:
    # SQLite text is UTF-8: a lone surrogate (from a file name that is not UTF-8) is escaped.
    if text is None:
        return None
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def db_key(key: str) -> str | bytes:
    """``key`` as the failures table stores it: text, or for a key that is not valid UTF-8
    (a file name with undecodable bytes) the bytes of its surrogate-escaped form."""
    try:
        key.encode()
    except UnicodeEncodeError:
        return key.encode("utf-8", "surrogateescape")
    return key


def from_db_key(key: str | bytes) -> str:
    """The key :func:`db_key` stored."""
    return key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key
