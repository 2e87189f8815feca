"""The queue's SQLite file: its table, one connection per process, and retries while other processes hold it.

Each statement waits up to ``BUSY_WAIT`` seconds for SQLite's lock; a transaction
that still finds the file busy is retried with backoff until the queue's ``timeout``, then
:class:`QueueBusy` is raised: it never hangs for ever. Every change is one transaction, so a
process killed at any moment leaves the queue consistent. Like the journal, commits use
``synchronous=NORMAL``: a put survives its process being killed; an OS crash or power loss may
lose the last few transactions.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from ..errors import BackendError, UsageError
from .journal import default_home
from .transaction import is_busy

FILE_NAME = "queue.db"
SCHEMA_VERSION = 1
BUSY_WAIT = 5.0  # SQLite's own wait for a lock, per statement

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an id is never reused, even after a purge
    queue     TEXT NOT NULL,
    status    TEXT NOT NULL,                      -- pending, running, done, failed
    item      BLOB NOT NULL,                      -- the item, pickled
    outcome   BLOB,                               -- (ok, value, error, attempts, duration), pickled, once finished
    claimer   TEXT,                               -- host:pid:start of the consumer running it
    lease     REAL,                               -- the claim holds until then (unix time)
    claims    INTEGER NOT NULL DEFAULT 0,         -- times handed to a consumer
    lost      INTEGER NOT NULL DEFAULT 0,         -- times its consumer vanished while running it
    created   REAL NOT NULL,
    finished  REAL
);
CREATE INDEX IF NOT EXISTS items_by_status ON items (queue, status, id);
"""

T = TypeVar("T")


class QueueBusy(BackendError):
    """The queue's database stayed locked by other processes for longer than the queue's ``timeout``."""


def default_path() -> Path:
    """Where queues live by default: ``$BATCHKIT_HOME/queue.db``, beside the journal."""
    return default_home() / FILE_NAME


class _Database:
    """The queue file: one connection per process, every use under one lock, busy retries."""

    def __init__(self, path: str | os.PathLike | None, timeout: float) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise UsageError(f"timeout={timeout!r}: use a number of seconds >= 0")
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.timeout = float(timeout)
        self.lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        self.retrying(self._connection)

    def _connection(self) -> sqlite3.Connection:
        # A forked child must not use its parent's connection: SQLite's locks would be shared.
        if self._db is None or self._pid != os.getpid():
            self._db = self._open()
            self._pid = os.getpid()
        return self._db

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=min(BUSY_WAIT, self.timeout), isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL loses no committed transaction when a process dies.
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:  # a new file: its tables, in one transaction (IF NOT EXISTS: others may race)
                db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
            elif version != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"it was written by another version of batchkit (queue schema {version}, this one reads "
                    f"{SCHEMA_VERSION})")
        except BaseException:
            db.close()
            raise
        return db

    def retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt``, again with backoff while the database is busy, up to ``timeout``."""
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                with self.lock:
                    return attempt()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise self._unusable(exc) from exc
                if time.monotonic() + delay > deadline:
                    raise QueueBusy(f"the queue database {self.path} stayed locked for more than {self.timeout:g} s "
                                    f"({exc}); other processes hold it: try again later") from exc
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from exc
            except OSError as exc:
                raise self._unusable(exc) from exc
            time.sleep(delay * random.uniform(0.5, 1.5))  # jitter: busy processes do not retry in step
            delay = min(2 * delay, 1.0)

    def _unusable(self, exc: BaseException) -> BackendError:
        return BackendError(f"the queue database {self.path} is unusable: {exc}; set BATCHKIT_HOME to a writable "
                            "directory or move the file aside")

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """The rows of one query (WAL: readers never wait for writers)."""
        return self.retrying(lambda: self._connection().execute(sql, params).fetchall())

    def write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body(db)`` in one ``BEGIN IMMEDIATE`` transaction: all of it or none of it."""
        def attempt() -> T:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                result = body(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return result

        return self.retrying(attempt)

    def close(self) -> None:
        """Close the connection (it is opened again if the queue is used again)."""
        with self.lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None
