"""The journal's tables: the SQL that creates them, its version, and the upgrades from older versions.

A chunk's item rows are packed into one row of ``chunks`` (see :mod:`batchkit.state.rowpack`, which
also holds the ``items`` view over them). :class:`~batchkit.state.journal.Journal` creates the tables
in a new file; :func:`check_version` upgrades a journal of an older version in place and refuses any
other version.
"""

import sqlite3

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
    message     TEXT,
    settings    TEXT,
    exit_code   INTEGER,
    command     TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_fingerprint ON runs (fingerprint, id);
-- The item rows of each finished chunk, packed as one JSON array (batchkit/state/rowpack.py);
-- the items view below shows them one row per item.
CREATE TABLE IF NOT EXISTS chunks (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    first_idx   INTEGER,
    n           INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    finished    REAL NOT NULL,
    rows        TEXT NOT NULL,
    spans       TEXT,
    attempt     INTEGER,
    data        BLOB,
    lost        TEXT,
    output_end  INTEGER
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
-- Retries, crashes and timeouts with their times, for the run's timeline (they are few).
CREATE TABLE IF NOT EXISTS events (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    time        REAL NOT NULL,
    kind        TEXT NOT NULL,
    key         TEXT,
    worker      TEXT,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id);
"""

# Bumped whenever the tables change shape. Version 3 journals are upgraded in place (the new
# columns and tables are additions); older or newer ones are refused clearly.
SCHEMA_VERSION = 4
_UPGRADES = {
    3: """
ALTER TABLE runs ADD COLUMN settings TEXT;
ALTER TABLE runs ADD COLUMN exit_code INTEGER;
ALTER TABLE runs ADD COLUMN command TEXT;
ALTER TABLE chunks ADD COLUMN spans TEXT;
ALTER TABLE chunks ADD COLUMN attempt INTEGER;
ALTER TABLE chunks ADD COLUMN data BLOB;
ALTER TABLE chunks ADD COLUMN lost TEXT;
ALTER TABLE chunks ADD COLUMN output_end INTEGER;
""",
}


def check_version(db: sqlite3.Connection, upgrade: bool) -> bool:
    """Whether the journal has its tables (upgrading an older one); raises for another version."""
    version, has_tables = _version_and_tables(db)
    if not has_tables or version == SCHEMA_VERSION:
        return has_tables
    if version in _UPGRADES and upgrade:
        db.executescript(f"BEGIN IMMEDIATE; {_UPGRADES[version]}{SCHEMA}"
                         f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        return True
    if version in _UPGRADES:
        return True  # read-only: the columns it lacks read as NULL
    raise sqlite3.DatabaseError(
        f"it was written by another version of batchkit (schema {version}, this one reads "
        f"{SCHEMA_VERSION}); move it aside to start a new history")


def _version_and_tables(db: sqlite3.Connection) -> tuple[int, bool]:
    """The journal's schema version, and whether it has its tables.

    One statement, so one snapshot: read one after the other, a run creating the journal in
    between would show its tables but not yet its version (read as 0: "another version").
    """
    version, tables = db.execute(
        "SELECT (SELECT user_version FROM pragma_user_version), "
        "(SELECT COUNT(*) FROM sqlite_master WHERE name='runs')").fetchone()
    return version, bool(tables)
