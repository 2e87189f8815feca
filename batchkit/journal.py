"""The journal: runs and their finished items in one SQLite file, so a run can be resumed.

One row per run (job, arguments with secrets removed, times, state, counts) and one row per
finished item (key, ok, a short value summary or the error, attempts, duration). Items are
written one transaction per chunk, so a crash loses at most the chunks in flight. WAL mode lets
``batchkit status`` read while a run writes.

A resumed run continues the *same* run row: the items it already has are skipped, the others
run, so every item of a run ends up recorded exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from .errors import BackendError
from .runrecord import RunRecord
from .secrets import redact

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job         TEXT NOT NULL,
    args        TEXT NOT NULL DEFAULT '{}',
    fingerprint TEXT NOT NULL,
    state       TEXT NOT NULL,
    pid         INTEGER,
    host        TEXT,
    started     REAL NOT NULL,
    updated     REAL NOT NULL,
    ended       REAL,
    total       INTEGER,
    succeeded   INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    elapsed     REAL NOT NULL DEFAULT 0,
    resumes     INTEGER NOT NULL DEFAULT 0,
    message     TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_fingerprint ON runs (fingerprint, id);
CREATE TABLE IF NOT EXISTS items (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    idx         INTEGER,
    ok          INTEGER NOT NULL,
    value       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 1,
    duration    REAL,
    finished    REAL NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
-- The error of each failed item. Kept apart so that the row of a succeeded item stays narrow:
-- binding a column costs about as much as writing it, and most items succeed.
CREATE TABLE IF NOT EXISTS failures (
    run_id      INTEGER NOT NULL,
    key         TEXT NOT NULL,
    error_type  TEXT,
    error_kind  TEXT,
    message     TEXT,
    traceback   TEXT,
    step        TEXT,
    PRIMARY KEY (run_id, key),
    FOREIGN KEY (run_id, key) REFERENCES items (run_id, key) ON DELETE CASCADE
) WITHOUT ROWID;
"""

# Bumped whenever the tables change shape; a journal of another version is refused clearly.
SCHEMA_VERSION = 2

__all__ = ["Journal", "RunRecord", "default_home", "default_path", "fingerprint", "item_key"]

# Run states. "running" with a dead pid is a crashed run: resumable like "interrupted".
UNFINISHED = ("running", "interrupted")


def default_home() -> Path:
    """``$BATCHKIT_HOME``, or the user's state directory (``~/.local/state/batchkit``)."""
    env = os.environ.get("BATCHKIT_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "batchkit"


def default_path() -> Path:
    """Where the journal lives by default: ``$BATCHKIT_HOME/batchkit.db``."""
    return default_home() / "batchkit.db"


def item_key(item: Any) -> str:
    """A stable key for ``item``: the path for files, the text for short strings, else a
    digest of the item's pickle. Independent of the item's position in the input."""
    if isinstance(item, os.PathLike):
        return os.fspath(item)  # type: ignore[return-value]
    if isinstance(item, str) and len(item) <= 256:
        return item
    try:
        data = pickle.dumps(item, protocol=4)
    except Exception:
        data = repr(item).encode()
    return "b2:" + hashlib.blake2b(data, digest_size=16).hexdigest()


def fingerprint(job: str, args: dict[str, Any]) -> str:
    """Identifies "the same job with the same arguments" for resume and locking."""
    text = json.dumps([job, args], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _pid_alive(pid: int | None, host: str | None) -> bool:
    if not pid or (host and host != socket.gethostname()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Journal:
    """An open journal file. Use :meth:`begin` for a run; read with :meth:`runs` and :meth:`items`."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            # Bigger pages: a third less CPU per item row (fewer, fuller B-tree pages). Only takes
            # effect when the file is created, which is when it matters.
            self.db.execute("PRAGMA page_size=16384")
            self.db.execute("PRAGMA journal_mode=WAL")
            # Checkpoint every ~4 MB (counted in pages), so it happens in the run's writer thread
            # as it goes rather than all at once when the journal closes.
            self.db.execute("PRAGMA wal_autocheckpoint=256")
            # With WAL, NORMAL loses no committed transaction when a process dies.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._check_version()
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise BackendError(f"journal {self.path} is unusable: {exc}; "
                               "set BATCHKIT_HOME to a writable directory or use --no-journal") from exc
        self.db.row_factory = sqlite3.Row
        # One connection, used by the run's writer thread and by readers: one user at a time.
        self.lock = threading.RLock()

    def _check_version(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        has_tables = self.db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='runs'").fetchone()[0]
        if has_tables and version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"it was written by another version of batchkit (schema {version}, this one reads "
                f"{SCHEMA_VERSION}); move it aside to start a new history")

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing a run -----------------------------------------------------------------------

    def begin(self, job: str, args: dict[str, Any] | None = None, *, resume: bool = False,
              retry_failed: bool = False, total: int | None = None) -> RunRecord:
        """Start a run of ``job`` (or continue the latest unfinished one with ``resume``, or
        re-run the failures of the latest one with ``retry_failed``)."""
        args = redact(args or {})
        fp = fingerprint(job, args)
        now = time.time()
        row = None
        if resume or retry_failed:
            row = self._latest(fp, unfinished_only=not retry_failed)
        with self._transaction():
            if row is not None:
                self.db.execute(
                    "UPDATE runs SET state='running', pid=?, host=?, updated=?, ended=NULL, "
                    "resumes=resumes+1, message=NULL, total=COALESCE(?, total) WHERE id=?",
                    (os.getpid(), socket.gethostname(), now, total, row["id"]))
                run_id = row["id"]
            else:
                cur = self.db.execute(
                    "INSERT INTO runs (job, args, fingerprint, state, pid, host, started, updated, total) "
                    "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                    (job, json.dumps(args, sort_keys=True, default=str), fp, os.getpid(),
                     socket.gethostname(), now, now, total))
                run_id = cur.lastrowid
        if row is None:
            done: set[str] = set()
        elif retry_failed:
            done = {r[0] for r in self.db.execute("SELECT key FROM items WHERE run_id=? AND ok=1", (run_id,))}
        else:
            done = {r[0] for r in self.db.execute("SELECT key FROM items WHERE run_id=?", (run_id,))}
        return RunRecord(self, run_id, job, done, resumed=row is not None)

    def _latest(self, fp: str, unfinished_only: bool) -> sqlite3.Row | None:
        for row in self.db.execute("SELECT * FROM runs WHERE fingerprint=? ORDER BY id DESC", (fp,)):
            if unfinished_only and row["state"] not in UNFINISHED:
                return None  # the latest run finished: nothing to resume
            if row["state"] == "running" and _pid_alive(row["pid"], row["host"]) and row["pid"] != os.getpid():
                continue  # still running elsewhere: the lock normally prevents this
            return row
        return None

    def _transaction(self) -> Any:
        db, lock = self.db, self.lock

        class _Tx:
            def __enter__(self) -> None:
                lock.acquire()
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type: Any, *rest: Any) -> None:
                try:
                    db.execute("ROLLBACK" if exc_type else "COMMIT")
                finally:
                    lock.release()

        return _Tx()

    # -- reading -----------------------------------------------------------------------------

    def runs(self, job: str | None = None, limit: int = 20, states: Iterable[str] | None = None) -> list[dict]:
        """Past runs, newest first; a "running" run whose process is gone shows as "crashed"."""
        sql = "SELECT * FROM runs"
        where, params = [], []
        if job:
            where.append("job = ?")
            params.append(job)
        if states:
            states = list(states)
            where.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self.lock:
            return [self._run_dict(r) for r in self.db.execute(sql, params)]

    def run(self, run_id: int) -> dict | None:
        """One run as a dict, or ``None``."""
        with self.lock:
            row = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return self._run_dict(row) if row else None

    def _run_dict(self, row: sqlite3.Row) -> dict:
        d = dict(row)
        d["args"] = json.loads(d["args"] or "{}")
        if d["state"] == "running" and not _pid_alive(d["pid"], d["host"]):
            d["state"] = "crashed"
        return d

    def counts(self, run_id: int, since: float | None = None) -> tuple[int, int, int]:
        """``(done, failed, done since the time ``since``)`` for a run, counted in SQL so a run of
        millions of items is never loaded to be counted."""
        with self.lock:
            done, failed, recent = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(1 - ok), 0), COALESCE(SUM(finished >= ?), 0) FROM items "
                "WHERE run_id=?", (since if since is not None else float("inf"), run_id)).fetchone()
        return done, failed, recent

    def items(self, run_id: int, failed_only: bool = False) -> list[dict]:
        """The recorded items of a run (only the failed ones with ``failed_only``), each a dict
        with the item's columns and, for failures, ``error_type``, ``error_kind``, ``message``,
        ``traceback`` and ``step``."""
        sql = ("SELECT i.*, f.error_type, f.error_kind, f.message, f.traceback, f.step FROM items i "
               "LEFT JOIN failures f ON f.run_id = i.run_id AND f.key = i.key WHERE i.run_id=?"
               + (" AND i.ok=0" if failed_only else "") + " ORDER BY i.idx, i.key")
        with self.lock:
            return [dict(r) for r in self.db.execute(sql, (run_id,))]
