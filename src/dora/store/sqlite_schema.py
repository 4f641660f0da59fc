"""DDL of the SQLite backend, one statement per entry (run inside one transaction).

Each index exists for one access path named in `dora.store.base`; the planner tests in
``tests/unit/test_store_sqlite.py`` check that the hot queries use them.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
"""Stored in ``PRAGMA user_version``; 0 means "not initialised"."""

SCHEMA: tuple[str, ...] = (
    # Records are a plain rowid table (not WITHOUT ROWID): rows carry JSON blobs of a
    # few KB, and SQLite recommends rowid tables once rows exceed ~1/20 of a page.
    """
    CREATE TABLE IF NOT EXISTS records (
        kind       TEXT NOT NULL,
        zone       TEXT NOT NULL,
        workspace  TEXT NOT NULL,
        name       TEXT NOT NULL,
        uid        TEXT NOT NULL,
        version    INTEGER NOT NULL,
        spec       TEXT NOT NULL,
        meta       TEXT NOT NULL,
        desired    TEXT NOT NULL,
        computed   TEXT,
        observed   TEXT,
        spec_hash  TEXT NOT NULL,
        owner      TEXT NOT NULL,
        node       TEXT NOT NULL,
        parent     TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (kind, zone, workspace, name)
    )
    """,
    # Containers by node: equality on (kind, zone, node) leaves (workspace, name), which
    # is exactly the key order list_records returns, so no sort step.
    """
    CREATE INDEX IF NOT EXISTS records_by_node
        ON records (kind, zone, node, workspace, name)
    """,
    # Containers by workload (parent) within a workspace, again already in key order.
    """
    CREATE INDEX IF NOT EXISTS records_by_parent
        ON records (kind, zone, workspace, parent, name)
    """,
    # The scheduler's queue: only unplaced, runnable containers are in this index, so
    # its size is the queue length, not the cluster size. Queries must repeat the WHERE
    # terms as literals for the planner to pick it.
    """
    CREATE INDEX IF NOT EXISTS records_pending
        ON records (zone, created_at, workspace, name)
        WHERE kind = 'Container' AND node = '' AND desired = 'run'
    """,
    # Spec versions hang off the record's uid, so a re-created resource starts fresh.
    # A rowid table again: a spec of ~1 KB would spill to an overflow page in a WITHOUT
    # ROWID b-tree (max local payload ~1 KB at 4 KB pages), but fits inline here.
    """
    CREATE TABLE IF NOT EXISTS spec_versions (
        uid       TEXT NOT NULL,
        number    INTEGER NOT NULL,
        spec      TEXT NOT NULL,
        spec_hash TEXT NOT NULL,
        actor     TEXT NOT NULL,
        at        REAL NOT NULL,
        UNIQUE (uid, number)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS events (
        id        INTEGER PRIMARY KEY,
        uid       TEXT NOT NULL,
        kind      TEXT NOT NULL,
        zone      TEXT NOT NULL,
        workspace TEXT NOT NULL,
        name      TEXT NOT NULL,
        reason    TEXT NOT NULL,
        message   TEXT NOT NULL,
        actor     TEXT NOT NULL,
        at        REAL NOT NULL
    )
    """,
    # (uid, at) and (zone, at) also carry the rowid, so "ORDER BY at, id" is index order.
    "CREATE INDEX IF NOT EXISTS events_by_uid ON events (uid, at)",
    "CREATE INDEX IF NOT EXISTS events_by_zone ON events (zone, at)",
    # AUTOINCREMENT (not a plain rowid) so a seq is never reused after trimming: cursors
    # are seqs, and a reused one would silently skip or repeat changes.
    """
    CREATE TABLE IF NOT EXISTS feed (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        zone      TEXT NOT NULL,
        op        TEXT NOT NULL,
        kind      TEXT NOT NULL,
        workspace TEXT NOT NULL,
        name      TEXT NOT NULL,
        version   INTEGER NOT NULL,
        parts     TEXT NOT NULL,
        at        REAL NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS feed_by_zone ON feed (zone, seq)",
    # Per zone, the highest seq ever trimmed: a cursor below it may have missed changes.
    """
    CREATE TABLE IF NOT EXISTS feed_trimmed (
        zone TEXT PRIMARY KEY,
        upto INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        token      INTEGER NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID
    """,
)
