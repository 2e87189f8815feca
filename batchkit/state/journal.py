"""The journal: runs and their finished items in one SQLite file, so a run can be resumed.

One row per run (job, arguments with secrets removed, times, state, counts) and one item row per
finished item (key, ok, a short value summary or the error, attempts, duration), read through the
``items`` view. Items are written one transaction per chunk, so a crash loses at most the chunks
in flight; a chunk's item rows are stored packed in one row of ``chunks`` (see
:mod:`batchkit.rowpack`), which is what keeps the journal's cost per item low. WAL mode lets
``batchkit status`` read while a run writes.

A resumed run continues the *same* run row: the items it already has are skipped, the others
run, so every item of a run ends up recorded exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from itertools import chain
from pathlib import Path
from typing import Any, Iterable

from ..errors import BackendError
from ..secrets import redact
from .keys import item_key
from .rowpack import VIEW, pack, row_keys, unpack
from .runrecord import RunRecord, from_db_key

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
-- The item rows of each finished chunk, packed as one JSON array (batchkit/rowpack.py);
-- the items view below shows them one row per item.
CREATE TABLE IF NOT EXISTS chunks (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    first_idx   INTEGER,
    n           INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    finished    REAL NOT NULL,
    rows        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_run ON chunks (run_id);
-- The error of each failed item, a row each (failures are few).
CREATE TABLE IF NOT EXISTS failures (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    error_type  TEXT,
    error_kind  TEXT,
    message     TEXT,
    traceback   TEXT,
    step        TEXT,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
"""

# Bumped whenever the tables change shape; a journal of another version is refused clearly.
SCHEMA_VERSION = 3

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


def fingerprint(job: str, args: dict[str, Any]) -> str:
    """Identifies "the same job with the same arguments" for resume and locking."""
    text = json.dumps([job, args], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _pid_alive(pid: int | None, host: str | None) -> bool:
    if not pid or (host and host != socket.gethostname()):
        return False
    import psutil  # only when a run says it is running: most commands never ask

    return psutil.pid_exists(pid)


class Journal:
    """An open journal file. Use :meth:`begin` for a run; read with :meth:`runs` and :meth:`items`."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            # Bigger pages: a chunk's packed item rows (about 100 bytes an item) span fewer
            # overflow pages. Only takes effect when the file is created.
            self.db.execute("PRAGMA page_size=16384")
            # With WAL, NORMAL loses no committed transaction when a process dies.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA journal_mode=WAL")
            # Checkpoint every ~4 MB (counted in pages), so it happens in the run's writer thread
            # as it goes rather than all at once when the journal closes.
            self.db.execute("PRAGMA wal_autocheckpoint=256")
            self.db.execute("PRAGMA foreign_keys=ON")
            if not self._check_version():  # a new journal: its tables, in one transaction
                self.db.executescript(f"BEGIN IMMEDIATE; {SCHEMA}{VIEW}"
                                      f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        except (sqlite3.Error, OSError) as exc:
            raise BackendError(f"journal {self.path} is unusable: {exc}; "
                               "set BATCHKIT_HOME to a writable directory or use --no-journal") from exc
        self.db.row_factory = sqlite3.Row
        # One connection, used by the run's writer thread and by readers: one user at a time.
        self.lock = threading.RLock()

    def _check_version(self) -> bool:
        """Whether the journal has its tables; raises if they are another version's."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        has_tables = self.db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='runs'").fetchone()[0]
        if has_tables and version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"it was written by another version of batchkit (schema {version}, this one reads "
                f"{SCHEMA_VERSION}); move it aside to start a new history")
        return bool(has_tables)

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
                if retry_failed:
                    self._forget_failures(run_id)
            else:
                cur = self.db.execute(
                    "INSERT INTO runs (job, args, fingerprint, state, pid, host, started, updated, total) "
                    "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                    (job, json.dumps(args, sort_keys=True, default=str), fp, os.getpid(),
                     socket.gethostname(), now, now, total))
                run_id = cur.lastrowid
        if row is None:
            done: set[str] = set()
        else:
            done = set(chain.from_iterable(
                row_keys(text) for (text,) in self.db.execute("SELECT rows FROM chunks WHERE run_id=?", (run_id,))))
        return RunRecord(self, run_id, job, done, resumed=row is not None)

    def _forget_failures(self, run_id: int) -> None:
        # --retry-failed: the failed items are dropped from the run, to be run and recorded
        # again. Should the retry stop early, they are simply not done yet: --resume runs them.
        # Part of begin()'s transaction.
        for chunk_id, first_idx, text in self.db.execute(
                "SELECT id, first_idx, rows FROM chunks WHERE run_id=? AND failed > 0", (run_id,)).fetchall():
            kept = [r for r in unpack(text, first_idx) if r[2] is not None]
            if kept:
                keys, indices, values, attempts, durations = zip(*kept)
                self.db.execute("UPDATE chunks SET rows=?, n=?, failed=0, first_idx=NULL WHERE id=?",
                                (pack(keys, values, durations, indices,
                                      {pos: a for pos, a in enumerate(attempts) if a != 1}),
                                 len(kept), chunk_id))
            else:
                self.db.execute("DELETE FROM chunks WHERE id=?", (chunk_id,))
        self.db.execute("DELETE FROM failures WHERE run_id=?", (run_id,))

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
                "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(failed), 0), "
                "COALESCE(SUM(CASE WHEN finished >= ? THEN n END), 0) FROM chunks WHERE run_id=?",
                (since if since is not None else float("inf"), run_id)).fetchone()
        return done, failed, recent

    def items(self, run_id: int, failed_only: bool = False) -> list[dict]:
        """The recorded items of a run (only the failed ones with ``failed_only``), each a dict
        with the item's columns and, for failures, ``error_type``, ``error_kind``, ``message``,
        ``traceback`` and ``step``."""
        # Read in Python rather than through the view: json.loads gives back every key exactly,
        # even one that SQLite's JSON functions cannot (a file name that is not valid UTF-8).
        with self.lock:
            errors = {from_db_key(r[0]): r[1:] for r in self.db.execute(
                "SELECT key, error_type, error_kind, message, traceback, step FROM failures WHERE run_id=?",
                (run_id,))}
            chunks = self.db.execute(
                "SELECT first_idx, finished, rows FROM chunks WHERE run_id=?"
                + (" AND failed > 0" if failed_only else ""),
                (run_id,)).fetchall()
        rows = []
        none = (None,) * 5
        for first_idx, finished, text in chunks:
            for key, idx, value, attempts, duration in unpack(text, first_idx):
                ok = value is not None
                if failed_only and ok:
                    continue
                error_type, error_kind, message, traceback, step = none if ok else errors.get(key, none)
                rows.append({"run_id": run_id, "key": key, "idx": idx, "ok": int(ok), "value": value,
                             "attempts": attempts, "duration": duration, "finished": finished,
                             "error_type": error_type, "error_kind": error_kind, "message": message,
                             "traceback": traceback, "step": step})
        rows.sort(key=lambda r: (r["idx"] if r["idx"] is not None else -1, r["key"]))
        return rows
