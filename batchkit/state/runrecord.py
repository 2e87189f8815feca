"""Writing one run into the journal: :class:`RunRecord`, one transaction per finished chunk.

What is written, and what is not (the README's promise): item keys exactly, except a key that
holds a secret, which is written redacted with a digest of the exact key (resume still matches
it); value summaries (``repr``, 200 characters) and error messages and tracebacks redacted and
capped; exact values (pickled) only for runs that need them after a resume — and never a value
whose pickle contains a secret: that item simply runs again on resume.
"""

from __future__ import annotations

import json
import pickle
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import JournalError
from ..outcome import MESSAGE_MAX, TRACEBACK_MAX
from ..outcome import capped as _cap
from ..secrets import contains_secret, redact, secret_values
from .keys import stored_key, stored_keys
from .rowpack import IN_ROWS, exact_in_summaries, pack, pack_strings, summaries

if TYPE_CHECKING:
    from ..engine.chunk import ChunkOutcomes
    from .journal import Journal


class RunRecord:
    """One run being written: :meth:`record` each finished chunk, then :meth:`end`.

    Chunks are written by a background thread, one transaction each, so the parent keeps
    dispatching while SQLite works (the sqlite3 module lets go of the GIL while it writes).
    At most ``QUEUED`` finished chunks wait for it: what a crash can lose is still bounded
    (the chunks in flight and these few), and :meth:`end` writes everything before closing the
    run. (With one, the dispatching thread waited 40-95 ms per 100k-file checksum run for the
    writer, its workers idle meanwhile.)
    """

    QUEUED = 4

    def __init__(self, journal: Journal, run_id: int, job: str, done: set[str], resumed: bool,
                 needs_values: bool = False, output_end: int | None = 0, forgotten: list[str] | None = None,
                 attempt: int = 0) -> None:
        self.journal = journal
        self.id = run_id
        self.job = job
        self.done = done
        self.resumed = resumed
        self.needs_values = needs_values
        self.output_end = output_end  # where --output stood at the last recorded chunk
        self.forgotten = forgotten or []  # keys begin() dropped to run again (--retry-failed)
        self.attempt = attempt  # 0 for a new run, n for its n-th resume: the timeline's attempts
        self.lost_values = 0  # values that could not be stored (unpicklable, or holding a secret)
        self.first_lost: str | None = None
        self._queue: queue.Queue | None = None
        self._writer: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._ended = False

    def is_done(self, key: str) -> bool:
        """Whether the item with ``key`` finished in an earlier attempt of this run."""
        if key in self.done:
            return True
        return bool(self.done) and contains_secret(key) and stored_key(key) in self.done

    def record(self, chunk: ChunkOutcomes, output_end: int | None = None) -> None:
        """Queue a finished chunk to be written in one transaction (blocks while one waits)."""
        self._raise_if_failed()
        if self._writer is None:
            self._queue = queue.Queue(maxsize=self.QUEUED)
            self._writer = threading.Thread(target=self._write_loop, name="batchkit-journal", daemon=True)
            self._writer.start()
        assert self._queue is not None
        self._queue.put((chunk, output_end))

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
            if isinstance(self._failure, JournalError):
                raise self._failure
            raise JournalError(f"journal {self.journal.path} could not be written: {self._failure}; "
                               "the run stopped and can be resumed with --resume once it is fixed") from self._failure

    def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._failure is None:
                try:
                    self._write(*job)
                except BaseException as exc:  # noqa: BLE001 - reported by the next record() or flush()
                    self._failure = exc

    def _write(self, chunk: ChunkOutcomes, output_end: int | None) -> None:
        now = time.time()
        keys, errors = stored_keys(chunk.key_list()), chunk.errors
        rows = None
        if not errors and chunk.indices is None and not chunk.attempts and chunk.values:
            # The common case first: short plain strings (digests, names), written as they are.
            rows = pack_strings(keys, chunk.values, chunk.durations)
            if rows is not None and contains_secret("\n".join(chunk.values)):
                rows = None
        redacted = False
        if rows is None:
            texts = summaries(chunk.values, errors)
            redacted = contains_secret("\n".join(texts) if not errors else
                                       "\n".join(t for t in texts if t is not None))
            if redacted:
                texts = [redact(t) if t is not None else None for t in texts]
            rows = pack(keys, texts, chunk.durations, chunk.indices, chunk.attempts)
            exact = not redacted and exact_in_summaries(chunk.values, texts, errors)
        else:
            exact = True  # a plain string's summary is itself
        failed = [(self.id, db_key(keys[pos]), err.type, err.kind, _text(_cap(redact(err.message), MESSAGE_MAX)),
                   _text(_cap(redact(err.traceback), TRACEBACK_MAX)), err.step) for pos, err in errors.items()]
        if not self.needs_values:
            data, lost = None, None
        elif exact:
            data, lost = IN_ROWS, None  # the rows' summaries are the exact values: no second copy
        else:
            data, lost = self._values(chunk)
        events = [(self.id, when, kind, db_key(keys[pos]) if 0 <= pos < len(keys) else None,
                   _span_worker(chunk, pos), _cap(redact(detail or ""), MESSAGE_MAX))
                  for pos, kind, when, detail in chunk.events]
        spans = json.dumps(chunk.spans) if chunk.spans else None
        db = self.journal.db
        with self.journal.transaction("record finished items"):
            db.execute("INSERT INTO chunks (run_id, first_idx, n, failed, finished, rows, spans, attempt, data, "
                       "lost, output_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (self.id, chunk.start if chunk.indices is None else None, len(chunk), len(errors), now,
                        rows, spans, self.attempt, data, lost, output_end))
            if failed:
                db.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?, ?)", failed)
            if events:
                db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", events)
            db.execute("UPDATE runs SET updated=? WHERE id=?", (now, self.id))

    def _values(self, chunk: ChunkOutcomes) -> tuple[bytes | None, str | None]:
        """The chunk's exact values, pickled; and the positions whose value could not be stored."""
        values = chunk.values
        secrets = secret_values()
        try:
            blob = pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)
            if not _holds_secret(blob, secrets):
                return blob, None
        except Exception:
            pass
        kept, lost = [], []
        for pos, value in enumerate(values):
            try:
                one = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                if _holds_secret(one, secrets):
                    raise ValueError("it contains a secret")
                kept.append(value)
            except Exception:
                kept.append(None)
                lost.append(pos)
                self.lost_values += 1
                if self.first_lost is None:
                    self.first_lost = redact(str(chunk.key(pos)))
        return pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL), json.dumps(lost) if lost else None

    def end(self, state: str, *, skipped: int, elapsed: float, message: str | None = None,
            total: int | None = None, exit_code: int | None = None) -> dict:
        """Close the run with ``state`` once every chunk is written; counts come from the items
        (a resumed run "succeeded" whose earlier attempts recorded failures is "failed").
        Returns the run as recorded (:meth:`Journal.run`).

        Never raises for a journal that cannot be written (locked past the busy timeout, disk
        full): a chunk that could not be written makes the run an "error" (resumable: that chunk
        runs again); a run that cannot even be closed stays "running" in the file, reads as
        crashed once its process is gone, and can be resumed. Either way the dict returned has
        state "error", the one-line reason in ``message``, and the counts the journal does hold.
        """
        failure = None
        try:
            self.flush()
        except JournalError as exc:
            failure = exc
            state, message = "error", str(exc)
        if state not in ("succeeded", "failed"):
            total = None  # the input was not read to its end: what was read so far is no total
        db = self.journal.db
        now = time.time()
        try:
            with self.journal.transaction("close the run"):
                succeeded, failed = db.execute(
                    "SELECT COALESCE(SUM(n - failed), 0), COALESCE(SUM(failed), 0) FROM chunks WHERE run_id=?",
                    (self.id,)).fetchone()
                if state == "succeeded" and failed:
                    state = "failed"  # a resumed run whose earlier attempt recorded failures
                db.execute(
                    "UPDATE runs SET state=?, updated=?, ended=?, succeeded=?, failed=?, skipped=?, "
                    "elapsed=elapsed+?, message=?, total=COALESCE(?, total), exit_code=? WHERE id=?",
                    (state, now, now, succeeded, failed, skipped, elapsed,
                     redact(message) if message else None, total, exit_code, self.id))
        except JournalError as exc:
            return self._unclosed(failure or exc)
        self._ended = True
        try:
            return self.journal.run(self.id) or {}
        except Exception:  # noqa: BLE001 - closed and recorded; only reading it back failed
            return {"id": self.id, "state": state, "message": message}

    def _unclosed(self, failure: JournalError) -> dict:
        """The run as far as the journal has it, when it could not be closed: state "error", the
        first failure's reason, and the counts of the chunks it did record (read-only: a reader
        gets through a lock or a full disk)."""
        run: dict[str, Any] = {"id": self.id, "state": "error", "message": str(failure)}
        try:
            done, failed, _ = self.journal.counts(self.id)
            run.update(succeeded=done - failed, failed=failed)
        except Exception:  # noqa: BLE001 - the counts are a courtesy; the reason is what matters
            pass
        return run


def _holds_secret(blob: bytes, secrets: list[str]) -> bool:
    """Whether a pickle holds a secret environment value or a URL with a password: C-speed
    substring scans first, so a chunk of ordinary values costs a few microseconds."""
    if any(v.encode("utf-8", "surrogateescape") in blob for v in secrets):
        return True
    return b"://" in blob and b"@" in blob and contains_secret(blob.decode("latin-1"))


def _span_worker(chunk: Any, pos: int) -> str | None:
    return chunk.spans[-1][0] if chunk.spans else None


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


__all__ = ["RunRecord", "db_key", "from_db_key"]
