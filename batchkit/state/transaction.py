"""Writing the journal safely: one transaction at a time, a bounded wait for a busy file, one-line errors.

Every write is one ``BEGIN IMMEDIATE`` transaction under the journal's lock, committed on success and
rolled back on error (:class:`_Transaction`, behind :meth:`~batchkit.state.journal.Journal.transaction`).
A write waits :func:`busy_timeout` seconds for another process's transaction; past it, and for every
other SQLite failure, the run gets a :class:`~batchkit.errors.JournalError` whose reason
(:func:`describe_sqlite_error`) says what to do, never a hang.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from ..errors import JournalError, UsageError

if TYPE_CHECKING:
    from .journal import Journal

# How long a write waits for another process's transaction before the journal counts as unusable
# (``$BATCHKIT_BUSY_TIMEOUT`` seconds overrides it: see :func:`busy_timeout`).
BUSY_TIMEOUT = 30.0


def busy_timeout() -> float:
    """Seconds a write waits for another process's transaction: ``$BATCHKIT_BUSY_TIMEOUT``, else
    :data:`BUSY_TIMEOUT` (30). Past it the journal counts as unusable: the run stops with exit 3."""
    text = os.environ.get("BATCHKIT_BUSY_TIMEOUT", "").strip()
    if not text:
        return BUSY_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86_400:  # also refuses nan and inf: sqlite3 needs a finite wait
        raise UsageError(f"BATCHKIT_BUSY_TIMEOUT={text!r}: give the seconds a journal write may wait "
                         f"for another process, e.g. {BUSY_TIMEOUT:g}")
    return value


def is_busy(exc: BaseException) -> bool:
    """Whether a SQLite error means another connection holds the database (worth waiting for)."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def describe_sqlite_error(exc: BaseException, waited: float | None = None) -> str:
    """A one-line reason for a SQLite failure, in words a user can act on (``waited``: the busy
    timeout the connection had)."""
    text = str(exc)
    low = text.lower()
    if is_busy(exc):
        return (f"another process keeps the database locked ({text}) for more than "
                f"{BUSY_TIMEOUT if waited is None else waited:g}s")
    if "disk is full" in low or "disk full" in low or getattr(exc, "errno", None) == 28:
        return "the disk is full"
    if "readonly" in low or "read-only" in low or "permission" in low:
        return f"it is read-only ({text})"
    return text


class _Transaction:
    def __init__(self, journal: Journal, what: str) -> None:
        self.journal = journal
        self.what = what

    def __enter__(self) -> sqlite3.Connection:
        lock = self.journal.lock
        lock.acquire()
        try:
            self.journal.db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            lock.release()  # never keep the lock for a transaction that did not start
            if isinstance(exc, sqlite3.Error):
                raise _journal_error(self.journal, self.what, exc) from exc
            raise
        return self.journal.db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        db, lock = self.journal.db, self.journal.lock
        try:
            if exc_type is None:
                try:
                    db.execute("COMMIT")
                except sqlite3.Error as err:
                    _rollback(db)
                    raise _journal_error(self.journal, self.what, err) from err
            else:
                _rollback(db)
                if isinstance(exc, sqlite3.Error):
                    raise _journal_error(self.journal, self.what, exc) from exc
        finally:
            lock.release()
        return False


def _patiently(step: Any, timeout: float) -> None:
    """Run ``step``, retrying while the database is locked, up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(0.2, pause * 2)


def _rollback(db: sqlite3.Connection) -> None:
    # SQLite may have rolled back by itself (disk full): "cannot rollback - no transaction is active".
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _journal_error(journal: Journal, what: str, exc: BaseException) -> JournalError:
    reason = describe_sqlite_error(exc, journal.busy_timeout)
    return JournalError(f"journal {journal.path}: could not {what}: {reason}; "
                        "the run stopped and can be resumed with --resume once the journal is usable")
