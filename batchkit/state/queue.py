"""The durable queue: items put by any process, claimed by consumers under a lease, results by id.

Where it lives. One SQLite file (WAL) beside the journal, ``$BATCHKIT_HOME/queue.db``, holding
every queue (a ``queue`` column names each). Beside the journal rather than inside ``batchkit.db``:
SQLite lets one writer at a time into a file, and a queue is written by every producer and every
consumer (puts, claims, lease renewals, results) while the journal is written by every run once
per chunk; in one file a burst of puts would hold up the journal commits of unrelated runs, and
the reverse. The queue also has its own life and schema version (emptied, purged, moved aside),
which must never make the run history unreadable.

The life of an item. :meth:`Queue.put` stores it ``pending`` (pickled, protocol 5).
:meth:`Queue.claim` takes the oldest pending items, and running items whose lease ran out, in one
``BEGIN IMMEDIATE`` transaction and marks them ``running`` with the claimer's id (host, pid and
process start time) and a lease deadline, so each item goes to one consumer. A live consumer
renews its leases (:class:`batchkit.sources.queue.QueueSource` does it from a heartbeat thread);
a consumer killed with -9 stops renewing, and its items go to whoever claims next once their lease
runs out, or at once when the dead consumer ran on this host (its process is gone).
:meth:`Queue.complete` stores each item's :class:`~batchkit.Outcome` and marks it ``done`` or
``failed``; the first result wins, so an item run twice (its lease ran out while it still ran)
keeps one outcome. :meth:`Queue.release` puts items back to ``pending`` (an interrupted run: never
a failure); :meth:`Queue.retry_failed` does the same for the failed ones. An item whose consumer
vanished ``MAX_LOST_LEASES`` times is failed (kind ``"crash"``), so one poison item cannot take
down consumers for ever.

Busy database: see :mod:`batchkit.state.queuedb`; each operation retries a busy file until the
queue's ``timeout``, then raises :class:`QueueBusy`, and every change is one transaction.
"""

from __future__ import annotations

import os
import pickle
import socket
import sqlite3
import time
from typing import Any, Callable, Iterable, Iterator

from ..errors import BatchkitError, UsageError
from ..outcome import ItemError, Outcome
from .claimer import _claimer_gone, _claimer_id, _lost_error
from .queuedb import QueueBusy, _Database, default_path

__all__ = ["Queue", "QueueBusy", "QueueTimeout", "UnknownItem", "default_path", "list_queues"]

PROTOCOL = 5
STATUSES = ("pending", "running", "done", "failed")
DEFAULT_LEASE = 60.0  # seconds a claim holds unless renewed
MAX_LOST_LEASES = 5  # a consumer vanished this many times while running an item: the item fails
DEFAULT_TIMEOUT = 60.0  # how long an operation keeps retrying a busy database
MAX_POLL = 0.5  # longest pause between two looks at an item that result() waits for

class QueueTimeout(BatchkitError, TimeoutError):
    """:meth:`Queue.result` waited its ``timeout`` and the item is not finished yet."""


class UnknownItem(UsageError, LookupError):
    """No item with this id in this queue (ids are what :meth:`Queue.put` returned)."""


def _dumps(item: Any) -> bytes:
    try:
        return pickle.dumps(item, protocol=PROTOCOL)
    except Exception as exc:
        raise UsageError(f"cannot put {type(item).__name__} item in a queue: it is not picklable ({exc}); "
                         "use plain data or instances of importable classes") from exc


def _outcome_blob(outcome: Outcome) -> tuple[str, bytes]:
    """``(status, stored outcome)``: the outcome's fields that the row does not hold (the id and the
    item are columns), pickled as a tuple, ten times cheaper than the object. A value that cannot
    be pickled makes the item fail, saying why."""
    try:
        blob = pickle.dumps((outcome.ok, outcome.value, outcome.error, outcome.attempts, outcome.duration),
                            protocol=PROTOCOL)
        return ("done" if outcome.ok else "failed"), blob
    except Exception as exc:
        error = ItemError(type(exc).__name__, f"its value ({type(outcome.value).__name__}) could not be stored in "
                          f"the queue: {exc}; return picklable values (plain data)")
        return "failed", _failure_blob(error, outcome.attempts, outcome.duration)


def _failure_blob(error: ItemError, attempts: int = 1, duration: float = 0.0) -> bytes:
    return pickle.dumps((False, None, error, attempts, duration), protocol=PROTOCOL)


class Queue:
    """A durable queue of work, shared by any number of producer and consumer processes.

    Items are any picklable values; :meth:`put` returns the item's id and :meth:`result` its
    :class:`~batchkit.Outcome` once a consumer ran it (``batchkit run JOB --queue NAME``, or
    :class:`batchkit.sources.queue.QueueSource` from Python). Queues live in
    ``$BATCHKIT_HOME/queue.db`` (``path`` for another file); a queue exists once an item is put.
    ``timeout``: how long an operation waits for a database that other processes keep busy
    before raising :class:`QueueBusy`.

    >>> q = bk.Queue("thumbnails")
    >>> ids = q.put_many(["a.jpg", "b.jpg"])
    >>> q.stats()
    {'pending': 2, 'running': 0, 'done': 0, 'failed': 0, 'total': 2}
    >>> q.result(ids[0], timeout=60).value       # once a consumer ran it
    """

    def __init__(self, name: str, path: str | os.PathLike | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if not isinstance(name, str) or not name.strip():
            raise UsageError(f"queue name {name!r}: use a non-empty string, e.g. bk.Queue('thumbnails')")
        self.name = name
        self._store = _Database(path, timeout)
        self.path = self._store.path
        self._claimer: str | None = None
        self._busy = False  # the last claim found all it asked for

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, path={str(self.path)!r})"

    def __reduce__(self) -> tuple:
        # A queue travels as its name and file; the receiving process opens its own connection.
        return (_rebuild, (self.name, str(self.path), self._store.timeout))

    def close(self) -> None:
        """Close the database connection (it reopens if the queue is used again)."""
        self._store.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- producing ---------------------------------------------------------------------------

    def put(self, item: Any) -> int:
        """Add ``item`` (any picklable value); return its id.

        >>> q.put({"url": "https://example.org", "retries": 2})
        1
        """
        blob = _dumps(item)
        return self._store.write(lambda db: db.execute(
            "INSERT INTO items (queue, status, item, created) VALUES (?, 'pending', ?, ?)",
            (self.name, blob, time.time())).lastrowid)

    def put_many(self, items: Iterable[Any]) -> list[int]:
        """Add every item in one transaction (all or none); return their ids, in order.

        >>> q.put_many(range(3))
        [2, 3, 4]
        """
        blobs = [_dumps(item) for item in items]  # before taking the lock: other processes wait less
        if not blobs:
            return []
        now = time.time()

        def insert(db: sqlite3.Connection) -> list[int]:
            last = db.execute("SELECT COALESCE(MAX(id), 0) FROM items").fetchone()[0]
            db.executemany("INSERT INTO items (queue, status, item, created) VALUES (?, 'pending', ?, ?)",
                           ((self.name, blob, now) for blob in blobs))
            # We hold the write lock and ids only grow: every id above `last` is one of ours.
            return [row[0] for row in db.execute("SELECT id FROM items WHERE id > ? ORDER BY id", (last,))]

        return self._store.write(insert)

    # -- reading -----------------------------------------------------------------------------

    def status(self, id: int) -> str:
        """``"pending"``, ``"running"``, ``"done"`` or ``"failed"`` (a running item whose lease ran
        out counts as pending: it waits for a consumer). Raises :class:`UnknownItem`."""
        rows = self._store.read("SELECT status, lease FROM items WHERE id=? AND queue=?", (id, self.name))
        if not rows:
            raise self._unknown(id)
        status, lease = rows[0]
        return "pending" if status == "running" and lease < time.time() else status

    def result(self, id: int, timeout: float | None = None) -> Outcome:
        """The item's :class:`~batchkit.Outcome` (``index`` is its id), waiting up to ``timeout``
        seconds (``None``: for ever) for a consumer to finish it.

        A failed item returns its outcome too (``ok`` false, ``error`` set; ``outcome.unwrap()``
        raises). ``outcome.item`` is ``None`` if the item cannot be loaded in this process.
        Raises :class:`QueueTimeout` (a ``TimeoutError``) when the wait ends first, and
        :class:`UnknownItem` for an id this queue does not have.

        >>> q.result(1, timeout=30).unwrap()
        """
        if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0):
            raise UsageError(f"timeout={timeout!r}: use a number of seconds >= 0, or None to wait for ever")
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            rows = self._store.read("SELECT status, item, outcome FROM items WHERE id=? AND queue=? "
                                    "AND status IN ('done', 'failed')", (id, self.name))
            if rows:
                return self._outcome(id, rows[0][1], rows[0][2])
            status = self.status(id)  # raises for an unknown id
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise QueueTimeout(f"item {id} of queue {self.name!r} is still {status} after {timeout:g} s; "
                                   "wait longer, or check that a consumer runs (batchkit run JOB --queue NAME)")
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 1.5, MAX_POLL)  # cheap when a result comes fast, light when it does not

    def _outcome(self, id_: int, item: bytes, outcome: bytes) -> Outcome:
        try:
            stored = pickle.loads(outcome)
        except Exception as exc:
            raise BatchkitError(f"the outcome of item {id_} of queue {self.name!r} cannot be loaded in this process "
                                f"({type(exc).__name__}: {exc}); return plain values (str, numbers, dicts, lists) "
                                "from the job, or load it where the job's classes can be imported") from exc
        try:
            value = pickle.loads(item)
        except Exception:  # the item is context; the outcome is what was asked for
            value = None
        return Outcome(id_, value, *stored)

    def _unknown(self, id_: int) -> UnknownItem:
        return UnknownItem(f"queue {self.name!r} has no item {id_}; ids are what put() returned "
                           "(`batchkit queue stats NAME` counts the items)")

    def stats(self) -> dict[str, int]:
        """Exact counts: ``pending``, ``running``, ``done``, ``failed`` and ``total``. Items whose
        consumer's lease ran out count as pending (any consumer may take them)."""
        return _counts(self._store, self.name)

    # -- consuming ---------------------------------------------------------------------------

    @property
    def claimer(self) -> str:
        """This process's id as a consumer: ``host:pid:start time``."""
        if self._claimer is None or self._claimer.split(":")[-2] != str(os.getpid()):
            self._claimer = _claimer_id()
        return self._claimer

    def claim(self, n: int = 1, lease: float = DEFAULT_LEASE) -> list[tuple[int, Any]]:
        """Take up to ``n`` items to run, oldest first: ``[(id, item), ...]`` (empty: none waiting).

        They are ``running`` under this process's name for ``lease`` seconds: :meth:`renew`
        before the lease runs out, then :meth:`complete` (or :meth:`release`). One transaction,
        so each item goes to one consumer. Items whose lease ran out, or whose consumer on this
        host has died, are taken too.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UsageError(f"n={n!r}: claim a whole number >= 1 of items")
        _check_lease(lease)
        claimer, now = self.claimer, time.time()
        host = socket.gethostname()
        # An idle consumer polls with a read, without taking the write lock; a busy one (its
        # last claim came back full) goes straight to the transaction.
        if not self._busy and not self._candidates(self._store.read, n=1, now=now, host=host):
            return []

        def take(db: sqlite3.Connection) -> list[tuple[int, bytes]]:
            picked = self._candidates(lambda sql, p: db.execute(sql, p).fetchall(), n, now, host)
            give = [(id_, blob) for id_, lost, blob in picked if lost < MAX_LOST_LEASES]
            fail = [(id_, lost) for id_, lost, _ in picked if lost >= MAX_LOST_LEASES]
            # One statement per 500 items rather than one per item: with the thread backend every
            # SQLite step hands the GIL to the workers and waits to get it back.
            for part in _parts([id_ for id_, _ in give]):
                db.execute("UPDATE items SET status='running', claimer=?, lease=?, claims=claims+1, "
                           f"lost=lost+(status='running') WHERE id IN ({','.join('?' * len(part))})",
                           (claimer, now + lease, *part))
            db.executemany("UPDATE items SET status='failed', outcome=?, finished=?, claimer=NULL, lease=NULL, "
                           "lost=? WHERE id=?",
                           [(_failure_blob(_lost_error(lost)), now, lost, id_) for id_, lost in fail])
            return give

        claimed = self._store.write(take)
        self._busy = len(claimed) == n
        return self._load_claimed(claimed)

    def _candidates(self, query: Callable[[str, tuple], list], n: int, now: float,
                    host: str) -> list[tuple[int, int, bytes]]:
        """``(id, lost count after this claim, item)`` of the ``n`` oldest items a consumer may take."""
        found = query("SELECT id, lost + 1, item FROM items WHERE queue=? AND status='running' AND lease < ? "
                      "ORDER BY id LIMIT ?", (self.name, now, n))
        found += query("SELECT id, lost, item FROM items WHERE queue=? AND status='pending' ORDER BY id LIMIT ?",
                       (self.name, n))
        if len(found) < n:  # consumers on this host that died: their items need not wait out the lease
            claimers = query("SELECT DISTINCT claimer FROM items WHERE queue=? AND status='running' AND lease >= ?",
                             (self.name, now))
            gone = [c for (c,) in claimers if c != self._claimer and _claimer_gone(c, host)]
            for claimer in gone:
                found += query("SELECT id, lost + 1, item FROM items WHERE queue=? AND status='running' "
                               "AND claimer=? AND lease >= ? ORDER BY id LIMIT ?", (self.name, claimer, now, n))
        return sorted(found)[:n]

    def _load_claimed(self, claimed: list[tuple[int, bytes]]) -> list[tuple[int, Any]]:
        out, broken = [], []
        for id_, blob in claimed:
            try:  # unpickling may import modules: done outside the transaction
                out.append((id_, pickle.loads(blob)))
            except Exception as exc:
                error = ItemError.from_exception(exc)
                error = ItemError(error.type, f"the item cannot be loaded by this consumer: {error.message}",
                                  error.traceback)
                broken.append((id_, Outcome(id_, None, False, None, error)))
        if broken:  # an item no consumer can load would otherwise come back for ever
            self.complete(broken)
        return out

    def renew(self, ids: Iterable[int], lease: float = DEFAULT_LEASE) -> int:
        """Extend the lease of these items, still running under this process, to ``lease`` seconds
        from now; return how many were renewed (fewer: some were finished, or taken by others)."""
        _check_lease(lease)
        claimer, until = self.claimer, time.time() + lease
        params = [(until, id_, claimer) for id_ in ids]
        if not params:
            return 0
        return self._store.write(lambda db: db.executemany(
            "UPDATE items SET lease=? WHERE id=? AND status='running' AND claimer=?", params).rowcount)

    def complete(self, pairs: Iterable[tuple[int, Outcome]]) -> int:
        """Store each ``(id, Outcome)`` in one transaction: ``done`` or ``failed`` by ``outcome.ok``.

        The first result of an item wins (an item run twice after a lost lease keeps one); returns
        how many were stored. A value that cannot be pickled makes its item fail, saying so.
        """
        now = time.time()
        rows = [(status, blob, now, id_, self.name)
                for id_, outcome in pairs for status, blob in [_outcome_blob(outcome)]]
        if not rows:
            return 0
        return self._store.write(lambda db: db.executemany(
            "UPDATE items SET status=?, outcome=?, finished=?, claimer=NULL, lease=NULL "
            "WHERE id=? AND queue=? AND status IN ('pending', 'running')", rows).rowcount)

    def release(self, ids: Iterable[int]) -> int:
        """Put items claimed by this process back to ``pending``, unrun (an interrupted run: never a
        failure); return how many."""
        claimer = self.claimer
        params = [(id_, claimer) for id_ in ids]
        if not params:
            return 0
        return self._store.write(lambda db: db.executemany(
            "UPDATE items SET status='pending', claimer=NULL, lease=NULL WHERE id=? AND status='running' "
            "AND claimer=?", params).rowcount)

    # -- housekeeping ------------------------------------------------------------------------

    def retry_failed(self) -> int:
        """Put every failed item back to ``pending`` (its error is dropped when it runs again);
        return how many. The ``--retry-failed`` of a queue."""
        return self._store.write(lambda db: db.execute(
            "UPDATE items SET status='pending', outcome=NULL, finished=NULL, claimer=NULL, lease=NULL, lost=0 "
            "WHERE queue=? AND status='failed'", (self.name,)).rowcount)

    def purge(self, *, failed: bool = False, older_than: float | None = None) -> int:
        """Delete the done items (and the failed ones with ``failed=True``) finished more than
        ``older_than`` seconds ago (``None``: all of them); return how many. Ids are never reused."""
        statuses = ("done", "failed") if failed else ("done",)
        before = time.time() - (older_than or 0.0)
        return self._store.write(lambda db: db.execute(
            f"DELETE FROM items WHERE queue=? AND status IN ({','.join('?' * len(statuses))}) AND finished <= ?",
            (self.name, *statuses, before)).rowcount)


def _parts(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    """``ids`` in lists short enough for SQLite's limit on parameters (999 in old versions)."""
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _check_lease(lease: float) -> None:
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not lease > 0:
        raise UsageError(f"lease={lease!r}: use a number of seconds > 0")


def _counts(store: _Database, name: str | None) -> Any:
    where, params = (" AND queue=?", (name,)) if name is not None else ("", ())
    # Two queries, so the big one is answered from the index alone; the second visits running items only.
    rows = store.read(f"SELECT queue, status, COUNT(*) FROM items WHERE 1{where} GROUP BY queue, status", params)
    expired = dict(store.read(f"SELECT queue, COUNT(*) FROM items WHERE status='running'{where} AND lease < ? "
                              "GROUP BY queue", (*params, time.time())))
    by_name: dict[str, dict[str, int]] = {}
    for queue, status, count in rows:
        counts = by_name.setdefault(queue, dict.fromkeys((*STATUSES, "total"), 0))
        counts[status] += count
        counts["total"] += count
    for queue, count in expired.items():  # a lease that ran out: the item waits for any consumer
        if queue in by_name:
            by_name[queue]["running"] -= count
            by_name[queue]["pending"] += count
    if name is not None:
        return by_name.get(name, dict.fromkeys((*STATUSES, "total"), 0))
    return by_name


def list_queues(path: str | os.PathLike | None = None) -> dict[str, dict[str, int]]:
    """Every queue in the file (default ``$BATCHKIT_HOME/queue.db``) with its counts, by name."""
    return dict(sorted(_counts(_Database(path, DEFAULT_TIMEOUT), None).items()))


def _rebuild(name: str, path: str, timeout: float) -> Queue:
    return Queue(name, path, timeout=timeout)
