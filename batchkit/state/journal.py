"""The journal: runs and their finished items in one SQLite file, so a run can be resumed.

One row per run (job, arguments with secrets removed, settings, times, state, counts) and one
item row per finished item (key, ok, a short redacted value summary, attempts, duration), read
through the ``items`` view; the errors of failed items are in ``failures``. Items are written
one transaction per chunk, so a crash loses at most the chunks in flight; a chunk's item rows
are stored packed in one row of ``chunks`` (see :mod:`batchkit.state.rowpack`), which keeps the
journal's cost per item low. A chunk row also records which worker ran it and when (the run's
timeline), the exact values when the run needs them after a resume (a finishing step, a
``Report``), and how far ``--output`` had been written. WAL mode lets ``batchkit status`` read
while a run writes.

A resumed run continues the *same* run row: the items it already has are skipped, the others
run, so every item of a run ends up recorded exactly once.

Every failure to use the file is a :class:`~batchkit.errors.JournalError` with a one-line
reason (locked by another process, disk full, read-only, another schema), never a hang. The tables
are in :mod:`batchkit.state.schema`; transactions and busy waits in :mod:`batchkit.state.transaction`.
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
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import JournalError
from ..outcome import ItemError
from ..secrets import redact
from .keys import item_key
from .lock import pid_exists
from .rowpack import IN_ROWS, VIEW, literal, pack, row_keys, unpack
from .schema import SCHEMA, SCHEMA_VERSION, check_version
from .transaction import _patiently, _rollback, _Transaction, busy_timeout, describe_sqlite_error

__all__ = ["Journal", "busy_timeout", "default_home", "default_path", "fingerprint", "item_key"]

# Run states. "running" with a dead pid reads as "crashed"; these can all be resumed.
RESUMABLE = ("running", "interrupted", "error", "halted")


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


def pid_alive(pid: int | None, host: str | None) -> bool:
    """Whether the process ``pid`` on ``host`` (this host only) is alive."""
    if not pid or (host and host != socket.gethostname()):
        return False
    return pid_exists(pid)


class Journal:
    """An open journal file. Use :meth:`begin` for a run; read with :meth:`runs` and :meth:`items`.

    ``readonly=True`` opens it for reading only (``history``, ``show``, ``status``), which also
    works where the home directory cannot be written.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.readonly = readonly
        self.busy_timeout = busy_timeout()
        try:
            self.db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            hint = ("" if readonly else "; set BATCHKIT_HOME to a writable directory or use --no-journal")
            raise JournalError(f"journal {self.path} is unusable: {describe_sqlite_error(exc, self.busy_timeout)}"
                               f"{hint}") from exc
        self.db.row_factory = sqlite3.Row
        # One connection, used by the run's writer thread and by readers: one user at a time.
        self.lock = threading.RLock()

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            uri = self.path.absolute().as_uri()
            try:
                db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=self.busy_timeout, isolation_level=None,
                                     check_same_thread=False)
                db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.OperationalError:
                # A read-only directory: WAL readers cannot create the shared-memory file.
                db = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None,
                                     check_same_thread=False)
            check_version(db, upgrade=False)
            return db
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        if fresh:
            try:  # the journal holds keys and values of the user's data: the user's own file
                os.chmod(self.path, 0o600)
            except OSError:
                pass
        # Several runs may open a new journal at the same moment: switching it to WAL needs the
        # file to itself, and SQLite answers "locked" at once rather than waiting. Retry.
        _patiently(lambda: self._prepare(db), self.busy_timeout)
        return db

    def _prepare(self, db: sqlite3.Connection) -> None:
        # Bigger pages: a chunk's packed item rows (about 100 bytes an item) span fewer
        # overflow pages. Only takes effect when the file is created.
        db.execute("PRAGMA page_size=16384")
        # With WAL, NORMAL loses no committed transaction when a process dies.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA journal_mode=WAL")
        # Checkpoint every ~4 MB (counted in pages), so it happens in the run's writer thread
        # as it goes rather than all at once when the journal closes.
        db.execute("PRAGMA wal_autocheckpoint=256")
        db.execute("PRAGMA foreign_keys=ON")
        if not check_version(db, upgrade=True):  # a new journal: its tables, in one transaction
            try:
                db.executescript(f"BEGIN IMMEDIATE; {SCHEMA}{VIEW}PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
            except sqlite3.Error:
                _rollback(db)
                raise

    def close(self) -> None:
        """Close the database connection."""
        with self.lock:
            self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing a run -----------------------------------------------------------------------

    def begin(self, job: str, args: dict[str, Any] | None = None, *, resume: bool = False,
              retry_failed: bool = False, total: int | None = None, needs_values: bool = False,
              settings: dict[str, Any] | None = None, command: str | None = None) -> Any:
        """Start a run of ``job`` (or continue the latest unfinished one with ``resume``, or
        re-run the failures of the latest one with ``retry_failed``); return its
        :class:`~batchkit.state.runrecord.RunRecord`.

        ``needs_values``: the run will want every item's exact value afterwards (a finishing
        step, a ``Report``): values are stored, and on resume items whose value could not be
        stored are run again.
        """
        from .runrecord import RunRecord

        args = redact(args or {})
        fp = fingerprint(job, args)
        now = time.time()
        with self.transaction("begin a run"):
            row = self._latest(fp, unfinished_only=not retry_failed) if (resume or retry_failed) else None
            if row is not None:
                self.db.execute(
                    "UPDATE runs SET state='running', pid=?, host=?, updated=?, ended=NULL, exit_code=NULL, "
                    "resumes=resumes+1, message=NULL, total=COALESCE(?, total) WHERE id=?",
                    (os.getpid(), socket.gethostname(), now, total, row["id"]))
                run_id = row["id"]
                forgotten = self._forget(run_id, failed=retry_failed, lost=needs_values)
            else:
                cur = self.db.execute(
                    "INSERT INTO runs (job, args, fingerprint, state, pid, host, started, updated, total, "
                    "settings, command) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                    (job, json.dumps(args, sort_keys=True, default=str), fp, os.getpid(),
                     socket.gethostname(), now, now, total,
                     json.dumps(redact(settings or {}), sort_keys=True, default=str), redact(command)))
                run_id, forgotten = cur.lastrowid, []
            done = set() if row is None else set(chain.from_iterable(
                row_keys(text) for (text,) in self.db.execute("SELECT rows FROM chunks WHERE run_id=?", (run_id,))))
        output_end = self.output_end(run_id) if row is not None else 0
        return RunRecord(self, run_id, job, done, resumed=row is not None, needs_values=needs_values,
                         output_end=output_end, forgotten=forgotten,
                         attempt=0 if row is None else (row["resumes"] or 0) + 1)

    def _forget(self, run_id: int, failed: bool, lost: bool) -> list[str]:
        """Drop from the run the rows of failed items (``--retry-failed``) and, for a resume that
        needs values, of items whose value was not stored (it held a secret or could not be
        pickled, or the earlier attempt stored none: ``bk.imap``, a job without a finishing step):
        they run and are recorded again. Part of begin()'s transaction. Returns the keys dropped."""
        if not failed and not lost:
            return []
        dropped: list[str] = []
        unstored = " OR (data IS NULL AND n > failed)" if lost else ""
        for chunk_id, first_idx, text, lost_text, stored in self.db.execute(
                "SELECT id, first_idx, rows, lost, data IS NOT NULL FROM chunks WHERE run_id=? AND "
                f"(failed > 0 OR lost IS NOT NULL{unstored})", (run_id,)).fetchall():
            rows = list(unpack(text, first_idx))
            if lost and not stored:
                gone = {pos for pos, r in enumerate(rows) if r[2] is not None}  # every value it had
            else:
                gone = set(json.loads(lost_text)) if lost and lost_text else set()
            keep = [pos for pos, r in enumerate(rows) if not ((failed and r[2] is None) or pos in gone)]
            if len(keep) == len(rows):
                continue
            dropped += [rows[pos][0] for pos in range(len(rows)) if pos not in set(keep)]
            if not keep:
                self.db.execute("DELETE FROM chunks WHERE id=?", (chunk_id,))
                continue
            kept = [rows[p] for p in keep]
            keys, indices, values, attempts, durations = zip(*kept)
            n_failed = sum(v is None for v in values)
            data = self.db.execute("SELECT data FROM chunks WHERE id=?", (chunk_id,)).fetchone()[0]
            if data is not None and data != IN_ROWS:
                old = pickle.loads(data)
                data = pickle.dumps([old[p] for p in keep], protocol=pickle.HIGHEST_PROTOCOL)
            self.db.execute("UPDATE chunks SET rows=?, n=?, failed=?, first_idx=NULL, data=?, lost=NULL WHERE id=?",
                            (pack(keys, values, durations, indices,
                                  {pos: a for pos, a in enumerate(attempts) if a != 1}),
                             len(kept), n_failed, data, chunk_id))
        if failed:
            self.db.execute("DELETE FROM failures WHERE run_id=?", (run_id,))
        return dropped

    def _latest(self, fp: str, unfinished_only: bool) -> sqlite3.Row | None:
        for row in self.db.execute("SELECT * FROM runs WHERE fingerprint=? ORDER BY id DESC", (fp,)):
            if unfinished_only and row["state"] not in RESUMABLE:
                return None  # the latest run finished: nothing to resume
            if row["state"] == "running" and pid_alive(row["pid"], row["host"]) and row["pid"] != os.getpid():
                continue  # still running elsewhere: the lock normally prevents this
            return row
        return None

    def transaction(self, what: str = "write") -> Any:
        """``with journal.transaction():`` one ``BEGIN IMMEDIATE`` transaction, committed on
        success, rolled back on error; every SQLite failure becomes a :class:`JournalError`."""
        return _Transaction(self, what)

    def output_end(self, run_id: int) -> int | None:
        """How far ``--output`` had been written when the run's last recorded chunk was."""
        with self.lock:
            row = self.db.execute("SELECT MAX(output_end) FROM chunks WHERE run_id=?", (run_id,)).fetchone()
        return row[0] if row else None

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
        d["settings"] = json.loads(d.get("settings") or "{}")
        if d["state"] == "running" and not pid_alive(d["pid"], d["host"]):
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
        rows = []
        for row in self.iter_items(run_id, failed_only):
            row.pop("exact", None)
            rows.append(row)
        rows.sort(key=lambda r: (r["idx"] if r["idx"] is not None else -1, r["key"]))
        return rows

    def iter_items(self, run_id: int, failed_only: bool = False, exact: bool = False) -> Iterator[dict]:
        """Like :meth:`items`, unsorted, one chunk at a time; with ``exact``, each row's
        ``exact`` holds the stored value (:data:`MISSING` when it was not stored)."""
        from .runrecord import from_db_key

        # Read in Python rather than through the view: json.loads gives back every key exactly,
        # even one that SQLite's JSON functions cannot (a file name that is not valid UTF-8).
        with self.lock:
            errors = {from_db_key(r[0]): r[1:] for r in self.db.execute(
                "SELECT key, error_type, error_kind, message, traceback, step FROM failures WHERE run_id=?",
                (run_id,))}
            chunks = self.db.execute(
                f"SELECT first_idx, finished, rows, {'data, lost' if exact else 'NULL, NULL'} FROM chunks "
                "WHERE run_id=?" + (" AND failed > 0" if failed_only else ""), (run_id,)).fetchall()
        none = (None,) * 5
        for first_idx, finished, text, data, lost_text in chunks:
            in_rows = data == IN_ROWS  # the summaries are the exact values (see rowpack)
            values = pickle.loads(data) if data is not None and not in_rows else None
            lost = set(json.loads(lost_text)) if lost_text else set()
            for pos, (key, idx, value, attempts, duration) in enumerate(unpack(text, first_idx)):
                ok = value is not None
                if failed_only and ok:
                    continue
                error_type, error_kind, message, traceback, step = none if ok else errors.get(key, none)
                row = {"run_id": run_id, "key": key, "idx": idx, "ok": int(ok), "value": value,
                       "attempts": attempts, "duration": duration, "finished": finished,
                       "error_type": error_type, "error_kind": error_kind, "message": message,
                       "traceback": traceback, "step": step}
                if exact:
                    row["exact"] = (literal(value) if in_rows and ok else
                                    values[pos] if values is not None and ok and pos not in lost else MISSING)
                yield row

    def earlier(self, run_id: int, keys: set[str] | None = None) -> dict[str, tuple]:
        """What earlier attempts recorded, by key: ``(ok, exact value or MISSING, ItemError or None,
        attempts, duration)`` — how a resumed run rebuilds the outcomes it skipped."""
        out = {}
        for row in self.iter_items(run_id, exact=True):
            if keys is not None and row["key"] not in keys:
                continue
            error = None if row["ok"] else ItemError(
                row["error_type"] or "Error", row["message"] or "", row["traceback"] or "",
                row["error_kind"] or "exception", row["step"])
            out[row["key"]] = (bool(row["ok"]), row["exact"] if row["ok"] else None, error,
                               row["attempts"], row["duration"] or 0.0)
        return out

    def timeline(self, run_id: int) -> dict[str, Any]:
        """What the run's pictures need: ``chunks`` (first_idx, n, failed, finished, spans,
        attempt) and ``events`` (time, kind, key, worker, detail), in time order."""
        with self.lock:
            chunks = [dict(r) for r in self.db.execute(
                "SELECT first_idx, n, failed, finished, spans, attempt FROM chunks WHERE run_id=? ORDER BY id",
                (run_id,))]
            events = [dict(r) for r in self.db.execute(
                "SELECT time, kind, key, worker, detail FROM events WHERE run_id=? ORDER BY time", (run_id,))]
        for c in chunks:
            c["spans"] = json.loads(c["spans"]) if c["spans"] else []
        return {"chunks": chunks, "events": events}


class _Missing:
    """A value an earlier attempt could not store (see :meth:`Journal.earlier`)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING = _Missing()
