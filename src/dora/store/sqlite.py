"""SQLite backend of the `Store` protocol: one WAL database file, shared by processes.

Threads and connections
    Each store owns one writer thread with one connection, and a few reader threads
    with one ``query_only`` connection each. Every write is one ``BEGIN IMMEDIATE``
    transaction on the writer thread, so writes of one process queue in that thread
    instead of fighting over SQLite's lock; only writes from *other* processes
    contend. For those the writer retries ``BEGIN IMMEDIATE`` itself, every 0.1-2 ms
    until ``busy_timeout``, rather than through SQLite's busy handler, whose sleeps
    grow to 25, 50, 100 ms: a process that keeps writing then starves one that
    waits (a 1.1 s write with two API workers under load). WAL
    lets readers run while a write is in progress. The event loop never blocks on
    SQLite. Cancelling a call does not cancel the SQL already handed to a thread: a
    write may still commit.

Durability
    ``synchronous="NORMAL"`` (the default): in WAL mode a committed write survives a
    crash of any process, and the file never corrupts, but the last transactions
    before a power cut or kernel crash can be lost (nothing is fsynced until a
    checkpoint). ``synchronous="FULL"`` fsyncs the WAL at every commit and closes that
    window, at the cost of one fsync per write: ``bench/store.py`` measures both, and
    on the development VM a create took ~0.2 ms (NORMAL) against ~3.9 ms (FULL). Dora's
    state heals from a lost tail (the scheduler re-places, agents re-report, users see
    a missing apply), so NORMAL is the default; set ``DORA_SQLITE_SYNCHRONOUS=FULL``
    where a lost write matters more than write latency.

Checkpoints
    A WAL checkpoint copies the log back into the database file and syncs it: 10-40
    ms on the development VM. SQLite runs one inside the commit that passes 1000 WAL
    pages, which stalled that write and every write queued behind it every ~70
    applies (an apply writes ~14 pages). Here the writer instead hands a PASSIVE
    checkpoint to a checkpoint thread of its own every ``CHECKPOINT_COMMITS``
    commits; PASSIVE takes no lock that writers or readers wait for, so writes go on
    meanwhile. SQLite's own checkpoint in the commit stays as a backstop, at
    ``BACKSTOP_PAGES``, should the thread fall behind.

Change feed and retention
    The feed is one table across zones; a change's cursor is its ``seq`` (decimal),
    never reused (AUTOINCREMENT). Retention counts rows over all zones together: the
    newest ``feed_retention`` rows are kept (plus at most one trim batch). When rows
    are trimmed, the highest trimmed seq of each zone is remembered; a cursor below
    it raises `CursorExpired`, a cursor at or above it is still exact, even when the
    zone has no rows left. While anyone waits in `wait_changes`, one watcher task per
    store reads the feed's end (one row of ``sqlite_sequence``) every
    ``poll_interval`` and wakes the waiters when another process wrote; writes of this
    store wake them at once. Polling cost does not grow with the number of waiters.

Generation
    `generation()` answers, without leaving the calling thread, a number that
    changes whenever any connection of any process has committed since: SQLite's
    ``PRAGMA data_version`` on a probe connection that never writes (~5 µs). The API
    keeps listings in memory while it stays the same (`dora.api.list_cache`).

Leases
    Rules in `dora.store.base`. The clock (``clock``, injectable for tests) is read
    inside the write transaction, after the lock is taken, so expiry checks and
    timestamps follow commit order across processes on one host.

Never put the file on NFS or another network file system: SQLite's locks, and WAL's
shared memory, do not work there (`dora.store.config` refuses known network mounts).
"""

# SQL text is assembled only from this module's constants (column lists, the key
# predicate); every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from dora.store.base import (
    EVENT_LIMIT,
    FIELDS,
    HISTORY_LIMIT,
    AlreadyExists,
    Change,
    ChangeOp,
    Conflict,
    Cursor,
    CursorExpired,
    Event,
    Fence,
    FencedOut,
    Key,
    Lease,
    NewRecord,
    NotFound,
    Patch,
    Record,
    SpecVersion,
    StoreError,
    Write,
    spec_hash,
)
from dora.store.common import ONCE_END, ONCE_PREFIX, once_name
from dora.store.common import check_fields as _check_fields
from dora.store.common import check_key as _check_key
from dora.store.common import check_new as _check_new
from dora.store.common import check_ttl as _check_ttl
from dora.store.common import dumps as _dumps
from dora.store.common import encode as _encode
from dora.store.common import pk as _pk
from dora.store.common import plan_write as _plan_write
from dora.store.common import record_from_row as _record
from dora.store.common import with_changes as _with_changes
from dora.store.sqlite_schema import SCHEMA, SCHEMA_VERSION

log = logging.getLogger("dora.store.sqlite")
T = TypeVar("T")
Synchronous = Literal["NORMAL", "FULL"]
WriteTx = Callable[[sqlite3.Connection, float], T]
ReadTx = Callable[[sqlite3.Connection], T]

_COLS = (
    "kind, zone, workspace, name, uid, version, spec, meta, desired, computed, observed,"
    " spec_hash, owner, node, parent, created_at, updated_at"
)
_PK = "kind = ? AND zone = ? AND workspace = ? AND name = ?"
# Statements that address one record by key name its index. Without it, SQLite's
# planner also weighs the partial index records_pending (WHERE kind = 'Container'
# ...) against the bound ``kind`` and so marks the statement to be re-prepared every
# time ``kind`` is bound: a parse and plan on every execution, ~3-4x the cost of the
# look-up itself. Naming the index leaves nothing to weigh.
_BY_KEY = "records INDEXED BY sqlite_autoindex_records_1"
_FEED_COLS = "seq, op, kind, workspace, name, version, parts, at"
_EVENT_COLS = "kind, zone, workspace, name, reason, message, actor, at"
_CURSOR = re.compile(r"[0-9]{1,19}")
CHECKPOINT_COMMITS = 32
"""Commits between two background checkpoints (~450 WAL pages of applies)."""
BACKSTOP_PAGES = 4000
"""WAL pages (~16 MB) after which a commit checkpoints by itself (wal_autocheckpoint)."""

# Compact JSON; non-ASCII kept as is (smaller, and SQLite stores UTF-8 anyway).


# --------------------------------------------------------------------------- values


def _event(row: Sequence[Any]) -> Event:
    return Event(Key(row[0], row[1], row[2], row[3]), row[4], row[5], row[6], row[7])


def _change(zone: str, row: Sequence[Any]) -> Change:
    seq, op, kind, workspace, name, version, parts, at = row
    op_: ChangeOp = op
    return Change(
        str(seq),
        op_,
        Key(kind, zone, workspace, name),
        version,
        tuple(parts.split(",")) if parts else (),
        at,
    )


def _parse_cursor(cursor: Cursor) -> int:
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise CursorExpired(f"{cursor!r} is not a cursor of this feed: resync")
    return int(cursor)


# --------------------------------------------------------------------------- checks
# Done before any SQL, so a malformed call fails fast and never half-writes a batch.


def _limit(limit: int | None) -> int:
    """SQLite's LIMIT: -1 is "no limit"; a negative request means none at all."""
    return -1 if limit is None else max(limit, 0)


def _store_error(exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(f"database busy: another process held the write lock too long ({text})")
    if "no such table" in text:
        return StoreError(f"store not initialised: call init() first ({text})")
    return StoreError(f"sqlite: {text}")


# --------------------------------------------------------------------------- write steps
# Each runs inside the caller's BEGIN IMMEDIATE transaction on the writer thread.


def _tx_check_fence(conn: sqlite3.Connection, fence: Fence | None, now: float) -> None:
    if fence is None:
        return
    row = conn.execute(
        "SELECT token, expires_at FROM leases WHERE name = ?", (fence.name,)
    ).fetchone()
    if row is None or row[0] != fence.token or row[1] <= now:
        raise FencedOut(f"lease {fence.name!r} is no longer held with token {fence.token}")


class _Tx:
    """One write transaction's context: its clock reading and actor, and the rows it
    appends to the feed and to spec_versions, written together by `flush` (one
    statement per table instead of one per write; same rows, same order)."""

    def __init__(self, conn: sqlite3.Connection, now: float, actor: str) -> None:
        self.conn = conn
        self.now = now
        self.actor = actor
        self.feed: list[tuple[Any, ...]] = []
        self.first_versions: dict[str, tuple[Any, ...]] = {}
        """Spec version 1 of each record created in this transaction, by uid."""
        self._spec_json: dict[int, tuple[Mapping[str, Any], str]] = {}

    def spec_json(self, spec: Mapping[str, Any]) -> str:
        """``spec`` as JSON, encoded once per spec dict in this transaction: a gang's
        replicas share their workload's spec (the dict stays alive while the batch
        holds it, so its id is not reused; the identity check keeps it exact)."""
        known = self._spec_json.get(id(spec))
        if known is not None and known[0] is spec:
            return known[1]
        text = _dumps(spec)
        self._spec_json[id(spec)] = (spec, text)
        return text

    def change(self, key: Key, op: ChangeOp, version: int, parts: Sequence[str]) -> None:
        self.feed.append(
            (key.zone, op, key.kind, key.workspace, key.name, version, ",".join(parts), self.now)
        )

    def write_first_version(self, uid: str) -> None:
        """Insert a pending version 1 now (a later spec change numbers from it)."""
        row = self.first_versions.pop(uid, None)
        if row is not None:
            self.conn.execute(_INSERT_VERSION, row)

    def flush(self) -> tuple[int, int]:
        """Write the pending rows; returns the feed seqs written (first, last)."""
        if self.first_versions:
            self.conn.executemany(_INSERT_VERSION, self.first_versions.values())
            self.first_versions.clear()
        if not self.feed:
            return (0, 0)
        self.conn.executemany(
            "INSERT INTO feed (zone, op, kind, workspace, name, version, parts, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            self.feed,
        )
        # We hold the write lock, so this transaction's seqs are contiguous.
        last = _rx_feed_end(self.conn)
        first = last - len(self.feed) + 1
        self.feed.clear()
        return first, last


_INSERT_VERSION = (
    "INSERT INTO spec_versions (uid, number, spec, spec_hash, actor, at) VALUES (?, ?, ?, ?, ?, ?)"
)


class _SpecHashes:
    """`spec_hash` by the spec's JSON text: many records share one spec (a workload's
    replicas, and every container of a workload), so it is hashed once. Equal texts
    are equal specs, hence equal hashes. Bounded; used by the writer thread only."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._known: dict[str, str] = {}

    def __call__(self, spec: Mapping[str, Any], spec_json: str) -> str:
        digest = self._known.get(spec_json)
        if digest is None:
            digest = spec_hash(spec)
            if len(self._known) >= self.LIMIT:
                self._known.clear()
            self._known[spec_json] = digest
        return digest


def _new_uid() -> str:
    """A random version-4 UUID as 32 hex digits: ``uuid.uuid4().hex`` without the
    UUID object (a few µs per create)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def _tx_spec_version(tx: _Tx, uid: str, spec_json: str, digest: str) -> None:
    """Record the next spec version of an existing uid (a spec-hash change)."""
    conn = tx.conn
    tx.write_first_version(uid)
    (number,) = conn.execute(
        "SELECT coalesce(max(number), 0) + 1 FROM spec_versions WHERE uid = ?", (uid,)
    ).fetchone()
    conn.execute(_INSERT_VERSION, (uid, number, spec_json, digest, tx.actor, tx.now))
    # Numbers are contiguous per uid, so this keeps exactly the newest HISTORY_LIMIT.
    if number > HISTORY_LIMIT:
        conn.execute(
            "DELETE FROM spec_versions WHERE uid = ? AND number <= ?",
            (uid, number - HISTORY_LIMIT),
        )


_INSERT_RECORD = (
    f"INSERT INTO records ({_COLS}) VALUES ({', '.join('?' * 17)}) ON CONFLICT DO NOTHING"
)


def _tx_create(tx: _Tx, new: NewRecord, hashes: _SpecHashes) -> Record:
    """Insert ``new`` (no read back: the record returned is built from ``new``, its
    parts the very objects given) and queue its spec version 1 and feed entry."""
    now = tx.now
    spec_json = tx.spec_json(new.spec)
    digest = hashes(new.spec, spec_json)
    uid = _new_uid()
    cur = tx.conn.execute(
        _INSERT_RECORD,
        (
            *_pk(new.key),
            uid,
            1,
            spec_json,
            _dumps(new.meta) if new.meta else "{}",
            new.desired,
            _encode("computed", new.computed),
            _encode("observed", new.observed),
            digest,
            new.owner,
            new.node,
            new.parent,
            now,
            now,
        ),
    )
    if cur.rowcount != 1:
        raise AlreadyExists(f"{new.key} already exists")
    tx.first_versions[uid] = (uid, 1, spec_json, digest, tx.actor, now)
    tx.change(new.key, "create", 1, FIELDS)
    return Record(
        key=new.key,
        uid=uid,
        version=1,
        spec=new.spec,
        meta=new.meta,
        desired=new.desired,
        computed=new.computed,
        observed=new.observed,
        spec_hash=digest,
        owner=new.owner,
        node=new.node,
        parent=new.parent,
        created_at=now,
        updated_at=now,
    )


def _tx_update(
    tx: _Tx,
    key: Key,
    items: Mapping[str, Any],
    expected: int,
    base: Record | None = None,
) -> Record:
    """Compare-and-set ``items`` onto ``key`` at version ``expected``; queue its feed
    entry. ``base``: the caller's copy of the record at ``expected`` (see `Write`)."""
    conn, now = tx.conn, tx.now
    if "spec" not in items:
        columns = ["version = version + 1", "updated_at = ?"]
        params: list[Any] = [now]
        for name, value in items.items():
            columns.append(f"{name} = ?")
            params.append(_encode(name, value))
        if base is not None and base.version == expected and base.key == key:
            # A record's (uid, version) names one content (every write bumps the
            # version; a re-created record has a new uid), so when the row is still
            # at base's pair the result is base with the patch: nothing to read back.
            # Column names come from FIELDS, never from the caller.
            cur = conn.execute(
                f"UPDATE {_BY_KEY} SET {', '.join(columns)}"
                f" WHERE {_PK} AND version = ? AND uid = ?",
                (*params, *_pk(key), expected, base.uid),
            )
            if cur.rowcount == 1:
                tx.change(key, "update", expected + 1, tuple(items))
                changes = dict(items)
                changes["version"] = expected + 1
                changes["updated_at"] = now
                return _with_changes(base, changes)
        # The common case (status, binding, observed): one statement when the version
        # matches; the look-up below only tells NotFound from Conflict.
        rows = conn.execute(
            f"UPDATE {_BY_KEY} SET {', '.join(columns)} WHERE {_PK} AND version = ?"
            f" RETURNING {_COLS}",
            (*params, *_pk(key), expected),
        ).fetchall()
        if rows:
            tx.change(key, "update", expected + 1, tuple(items))
            return _record(rows[0])
    row = conn.execute(
        f"SELECT version, uid, spec_hash FROM {_BY_KEY} WHERE {_PK}", _pk(key)
    ).fetchone()
    if row is None:
        raise NotFound(f"{key} not found")
    version, uid, old_digest = row
    if version != expected:
        raise Conflict(key, expected, version)
    columns = ["version = ?", "updated_at = ?"]
    params = [version + 1, now]
    for name, value in items.items():
        columns.append(f"{name} = ?")
        params.append(_encode(name, value))
    digest = spec_hash(items["spec"]) if "spec" in items else old_digest
    if digest != old_digest:
        columns.append("spec_hash = ?")
        params.append(digest)
    # Column names come from FIELDS, never from the caller.
    rows = conn.execute(
        f"UPDATE {_BY_KEY} SET {', '.join(columns)} WHERE {_PK} RETURNING {_COLS}",
        (*params, *_pk(key)),
    ).fetchall()
    if digest != old_digest:
        _tx_spec_version(tx, uid, _dumps(items["spec"]), digest)
    tx.change(key, "update", version + 1, tuple(items))
    return _record(rows[0])


def _tx_delete(tx: _Tx, key: Key, expected: int | None) -> None:
    conn = tx.conn
    row = conn.execute(f"SELECT version, uid FROM {_BY_KEY} WHERE {_PK}", _pk(key)).fetchone()
    if row is None:
        raise NotFound(f"{key} not found")
    version, uid = row
    if expected is not None and version != expected:
        raise Conflict(key, expected, version)
    conn.execute(f"DELETE FROM {_BY_KEY} WHERE {_PK}", _pk(key))
    tx.first_versions.pop(uid, None)  # created in this transaction: never written
    conn.execute("DELETE FROM spec_versions WHERE uid = ?", (uid,))
    conn.execute("DELETE FROM events WHERE uid = ?", (uid,))
    tx.change(key, "delete", int(version), FIELDS)


# An event goes to the record that has its key now (the uid looked up in the same
# statement); none → no row inserted.
_INSERT_EVENT = (
    f"INSERT INTO events (uid, {_EVENT_COLS})"
    " SELECT uid, kind, zone, workspace, name, ?, ?, ?, ?"
    f" FROM {_BY_KEY} WHERE {_PK}"
)
# Keep the newest EVENT_LIMIT events of the record that has the key now.
_TRIM_EVENTS = (
    f"DELETE FROM events WHERE uid = (SELECT uid FROM {_BY_KEY} WHERE {_PK})"
    " AND (at, id) <= (SELECT at, id FROM events"
    f" WHERE uid = (SELECT uid FROM {_BY_KEY} WHERE {_PK})"
    " ORDER BY at DESC, id DESC LIMIT 1 OFFSET ?)"
)


def _event_row(event: Event) -> tuple[Any, ...]:
    return (event.reason, event.message, event.actor, event.at, *_pk(event.key))


def _tx_add_event(conn: sqlite3.Connection, event: Event) -> None:
    """Attach ``event`` to its record and keep the newest EVENT_LIMIT."""
    if conn.execute(_INSERT_EVENT, _event_row(event)).rowcount != 1:
        raise NotFound(f"{event.key} not found: no record to attach the event to")
    pk = _pk(event.key)
    conn.execute(_TRIM_EVENTS, (*pk, *pk, EVENT_LIMIT))


# The same two statements for a record whose uid the transaction knows because it
# wrote the record: no look-up of the record by key (about half their cost).
_INSERT_EVENT_UID = f"INSERT INTO events (uid, {_EVENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_TRIM_EVENTS_UID = (
    "DELETE FROM events WHERE uid = ? AND (at, id) <= (SELECT at, id FROM events"
    " WHERE uid = ? ORDER BY at DESC, id DESC LIMIT 1 OFFSET ?)"
)


def _tx_add_events(
    conn: sqlite3.Connection,
    events: Sequence[Event],
    fresh: set[Key],
    uids: Mapping[Key, str],
) -> None:
    """Attach each event to its record, in order, dropping those whose record does not
    exist; then trim each record's events to the newest EVENT_LIMIT, except records
    created in this transaction that cannot have that many yet (``fresh``). ``uids``:
    the uid under each key this transaction wrote (absent: deleted, or not written)."""
    # Consecutive events of one statement go in one executemany: ids keep the order.
    runs: list[tuple[str, list[tuple[Any, ...]]]] = []
    for event in events:
        uid = uids.get(event.key)
        if uid is None:
            sql, row = _INSERT_EVENT, _event_row(event)
        else:
            sql = _INSERT_EVENT_UID
            row = (uid, *_pk(event.key), event.reason, event.message, event.actor, event.at)
        if not runs or runs[-1][0] is not sql:
            runs.append((sql, []))
        runs[-1][1].append(row)
    for sql, rows in runs:
        conn.executemany(sql, rows)
    counts: dict[Key, int] = {}
    for event in events:
        counts[event.key] = counts.get(event.key, 0) + 1
    by_key: list[tuple[Any, ...]] = []
    by_uid: list[tuple[Any, ...]] = []
    for key, count in counts.items():
        if key in fresh and count <= EVENT_LIMIT:
            continue
        uid = uids.get(key)
        if uid is None:
            by_key.append((*_pk(key), *_pk(key), EVENT_LIMIT))
        else:
            by_uid.append((uid, uid, EVENT_LIMIT))
    if by_key:
        conn.executemany(_TRIM_EVENTS, by_key)
    if by_uid:
        conn.executemany(_TRIM_EVENTS_UID, by_uid)


def _tx_acquire(
    conn: sqlite3.Connection, now: float, name: str, holder: str, ttl: float
) -> Lease | None:
    row = conn.execute(
        "SELECT holder, token, expires_at FROM leases WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        token = 1
    elif row[2] > now:  # held
        if row[0] != holder:
            return None
        token = row[1]  # the holder renews
    else:  # free or expired: a new tenure, a new token (even for the same holder)
        token = row[1] + 1
    conn.execute(
        "INSERT INTO leases (name, holder, token, expires_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
        " token = excluded.token, expires_at = excluded.expires_at",
        (name, holder, token, now + ttl),
    )
    return Lease(name, holder, token, now + ttl)


# --------------------------------------------------------------------------- read steps


def _rx_get(conn: sqlite3.Connection, key: Key) -> Record | None:
    row = conn.execute(f"SELECT {_COLS} FROM {_BY_KEY} WHERE {_PK}", _pk(key)).fetchone()
    return None if row is None else _record(row)


def _rx_list(
    conn: sqlite3.Connection, kind: str, filters: Mapping[str, str | None], limit: int
) -> list[Record]:
    return [_record(row) for row in _rx_rows(conn, kind, filters, limit)]


def _rx_rows(
    conn: sqlite3.Connection, kind: str, filters: Mapping[str, str | None], limit: int
) -> list[tuple[Any, ...]]:
    where = ["kind = ?"]
    params: list[Any] = [kind]
    for column, value in filters.items():
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    # Column names come from a fixed mapping built by list_records, never from the caller.
    sql = (
        f"SELECT {_COLS} FROM records WHERE {' AND '.join(where)}"
        " ORDER BY kind, zone, workspace, name LIMIT ?"
    )
    rows: list[tuple[Any, ...]] = conn.execute(sql, (*params, limit)).fetchall()
    return rows


def _rx_pending(conn: sqlite3.Connection, zone: str, limit: int) -> list[Record]:
    # The literals must match the partial index's WHERE for the planner to use it.
    sql = (
        f"SELECT {_COLS} FROM records"
        " WHERE kind = 'Container' AND node = '' AND desired = 'run' AND zone = ?"
        " ORDER BY created_at, workspace, name LIMIT ?"
    )
    return [_record(row) for row in conn.execute(sql, (zone, limit))]


def _rx_spec_versions(conn: sqlite3.Connection, key: Key) -> list[SpecVersion]:
    rows = conn.execute(
        "SELECT s.uid, s.number, s.spec, s.spec_hash, s.actor, s.at"
        " FROM records AS r INDEXED BY sqlite_autoindex_records_1"
        " JOIN spec_versions AS s ON s.uid = r.uid"
        " WHERE r.kind = ? AND r.zone = ? AND r.workspace = ? AND r.name = ?"
        " ORDER BY s.number",
        _pk(key),
    )
    return [
        SpecVersion(key, uid, number, json.loads(spec), digest, actor, at)
        for uid, number, spec, digest, actor, at in rows
    ]


def _rx_events(conn: sqlite3.Connection, key: Key, limit: int) -> list[Event]:
    rows = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events"
        f" WHERE uid = (SELECT uid FROM {_BY_KEY} WHERE {_PK})"
        " ORDER BY at DESC, id DESC LIMIT ?",
        (*_pk(key), limit),
    ).fetchall()
    return [_event(row) for row in reversed(rows)]


def _rx_zone_events(conn: sqlite3.Connection, zone: str, since: float, limit: int) -> list[Event]:
    rows = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE zone = ? AND at >= ?"
        " ORDER BY at DESC, id DESC LIMIT ?",
        (zone, since, limit),
    ).fetchall()
    return [_event(row) for row in reversed(rows)]


def _rx_trimmed(conn: sqlite3.Connection, zone: str) -> int:
    row = conn.execute("SELECT upto FROM feed_trimmed WHERE zone = ?", (zone,)).fetchone()
    return 0 if row is None else int(row[0])


def _rx_head(conn: sqlite3.Connection, zone: str) -> Cursor:
    (newest,) = conn.execute("SELECT max(seq) FROM feed WHERE zone = ?", (zone,)).fetchone()
    # With every row of the zone trimmed, the last trimmed seq is still an exact
    # position: nothing after it was lost.
    return str(max(newest or 0, _rx_trimmed(conn, zone)))


def _rx_feed_end(conn: sqlite3.Connection) -> int:
    """The newest seq ever handed out, in any zone (0 on a new feed)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'feed'").fetchone()
    return 0 if row is None else int(row[0])


def _rx_zone_ends(conn: sqlite3.Connection, zones: frozenset[str]) -> dict[str, int]:
    """The newest position of each of `zones`: its newest seq, or its last trimmed one
    (so a waiter whose next change was trimmed already is woken to find out)."""
    return {zone: int(_rx_head(conn, zone)) for zone in zones}


def _rx_changes(
    conn: sqlite3.Connection, zone: str, after: Cursor | None, limit: int
) -> list[Change]:
    start = 0
    if after is not None:
        start = _parse_cursor(after)
        if start < _rx_trimmed(conn, zone):
            raise CursorExpired(f"zone {zone!r}: changes after {after} were trimmed: resync")
        if start > _rx_feed_end(conn):
            raise CursorExpired(f"cursor {after} is beyond the feed's end (reset?): resync")
    rows = conn.execute(
        f"SELECT {_FEED_COLS} FROM feed WHERE zone = ? AND seq > ? ORDER BY seq LIMIT ?",
        (zone, start, limit),
    )
    return [_change(zone, row) for row in rows]


# --------------------------------------------------------------------------- the store


class SqliteStore:
    """`Store` on one SQLite file. See the module docstring for threads and durability.

    ``feed_retention``: change-feed rows kept, all zones together (not seconds).
    ``poll_interval``: seconds between feed probes in `wait_changes`, which bounds how
    late a waiter sees a write from another process.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        feed_retention: int = 100_000,
        poll_interval: float = 0.02,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 10.0,
        readers: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if feed_retention < 1:
            raise ValueError("feed_retention must be at least 1 row")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self._retention = feed_retention
        # Trim in batches so a steady stream of writes does not pay a DELETE each time.
        self._trim_every = max(1, min(256, feed_retention // 100))
        self._poll = poll_interval
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="dora-sqlite-write")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="dora-sqlite-read")
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="dora-sqlite-checkpoint")
        # Writer thread only: commits since the last checkpoint was handed over, and
        # whether that one is still queued or running.
        self._commits = 0
        self._checkpoint_pending = False
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        # wait_changes callers: their wake-up future → (zone, the feed end they probed).
        self._waiters: dict[asyncio.Future[None], tuple[str, int]] = {}
        # Zones the running write transaction appended to the feed (writer thread only).
        self._tx_zones: set[str] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        self._hashes = _SpecHashes()
        self._probe: sqlite3.Connection | None = None
        self._wal_index: WalIndex | None = None
        self._wal_index_live = False
        self._wal_index_tried = False

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @property
    def busy_timeout(self) -> float:
        """Seconds a write waits for another process's write lock before failing."""
        return self._busy_timeout

    # connections ------------------------------------------------------------
    def _connect(self, writer: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            # The writer waits for the lock in `_begin`, in finer steps than SQLite's.
            timeout=0 if writer else self._busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # used by one thread; closed by close()'s thread
            cached_statements=256,
        )
        try:
            self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            if writer:
                conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            else:
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a fresh file to WAL needs a brief exclusive lock; another process
        # opening it at the same moment can make that fail fast, so retry.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode})")

    def _conn(self, writer: bool) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(writer)
        return conn

    def generation(self) -> int | None:
        """A number that changes whenever anyone (this store, another store, another
        process) commits to the file; None when SQLite cannot say right now (busy,
        closed). Cheap and synchronous: call it from one thread only (the event loop).
        Two equal answers mean nothing was committed in between.

        Read from the WAL-index header in the ``-shm`` file (`WalIndex`: one
        ``pread``) once SQLite's own ``PRAGMA data_version`` (a read transaction, two
        lock calls and a ``getpid``: ~15 µs in a busy server) has opened it; the
        pragma stays the fallback, and checks the header once a second
        (`WalIndex.verify`)."""
        if self._closed:
            return None
        wal = self._wal_index if self._wal_index_live else None
        if wal is not None:
            now = time.monotonic()
            if now < wal.verify_at:
                return wal.header()
            wal.verify_at = now + WAL_VERIFY_S
            before = wal.header()
            version = self._data_version()
            after = wal.header()
            if before is None or version is None or after is None:
                return None
            if wal.verify(before, version, after):
                return after
            log.warning(
                "event=wal_index_unreliable path=%s: commits not seen in %s; "
                "reading PRAGMA data_version from now on",
                self.path,
                wal.path,
            )
            self._wal_index_live = False  # its descriptor is given back at close
            return None
        version = self._data_version()
        if version is not None and self._wal_index is None and not self._wal_index_tried:
            self._wal_index_tried = True
            self._wal_index = WalIndex.open(Path(f"{self.path}-shm"))
            header = self._wal_index.header() if self._wal_index is not None else None
            if header is not None:
                self._wal_index_live = True
                return header  # from now on, the header's numbers
        return version

    def _data_version(self) -> int | None:
        try:
            if self._probe is None:
                # timeout=0: the caller's thread never waits for a lock.
                probe = sqlite3.connect(
                    self.path, timeout=0, isolation_level=None, check_same_thread=False
                )
                probe.execute("PRAGMA query_only = ON")
                with self._conns_lock:
                    self._conns.append(probe)
                self._probe = probe
            (version,) = self._probe.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None
        return int(version)

    # thread bodies ----------------------------------------------------------
    def _write_sync(self, fn: WriteTx[T]) -> tuple[T, frozenset[str]]:
        """Run `fn` in one write transaction; its result and the zones whose feed it
        appended to (whose `wait_changes` callers to wake)."""
        self._tx_zones = set()
        try:
            conn = self._conn(writer=True)
            self._begin(conn)
            try:
                result = fn(conn, self._clock())
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc
        self._commits += 1
        if self._commits >= CHECKPOINT_COMMITS and not self._checkpoint_pending:
            self._commits = 0
            self._checkpoint_pending = True
            self._checkpointer.submit(self._checkpoint_sync)
        return result, frozenset(self._tx_zones)

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE (the write lock), retrying while another process holds it.
        In WAL mode only this statement of a write transaction waits for a lock."""
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.0001
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if not ("locked" in text or "busy" in text) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)

    def _checkpoint_sync(self) -> None:
        """PASSIVE checkpoint on the checkpoint thread's own connection: copies what no
        reader still needs, waits for no one, never blocks a write."""
        try:
            self._conn(writer=True).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # busy (another process checkpoints) or closed
            log.debug("event=sqlite_checkpoint_skipped reason=%s", exc)
        finally:
            self._checkpoint_pending = False

    def _read_sync(self, fn: ReadTx[T], snapshot: bool) -> T:
        try:
            conn = self._conn(writer=False)
            if not snapshot:  # one statement is its own snapshot
                return fn(conn)
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    # async plumbing ---------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} is closed")

    async def _write(self, fn: WriteTx[T]) -> T:
        self._check_open()
        loop = asyncio.get_running_loop()
        zones: frozenset[str] | None = None  # unknown (failed, or cancelled): wake all
        try:
            result, zones = await loop.run_in_executor(self._writer, self._write_sync, fn)
            return result
        finally:
            self._notify(zones)

    async def _read(self, fn: ReadTx[T], *, snapshot: bool = False) -> T:
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_sync, fn, snapshot)

    def _notify(self, zones: frozenset[str] | None = None) -> None:
        """Wake this store's `wait_changes` callers: a write of ours just committed
        changes in `zones` (None: maybe anywhere). A waiter on another zone sleeps on:
        e.g. the API's identity cache, which follows the global zone, is not woken by
        every workload applied."""
        for fut, (zone, _) in list(self._waiters.items()):
            if zones is None or zone in zones:
                _wake(fut)

    def _ensure_watcher(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = loop.create_task(self._watch(), name=f"watch {self.path}")

    async def _watch(self) -> None:
        """Probe the feed's end in each waited-on zone every poll_interval while anyone
        waits; wake waiters that probed before a newer change of their zone. One probe
        per store, however many waiters: this is how writes of *other* processes are
        noticed."""
        try:
            while self._waiters:
                await asyncio.sleep(self._poll)
                if not self._waiters:
                    break
                zones = frozenset(zone for zone, _ in self._waiters.values())
                ends = await self._read(functools.partial(_rx_zone_ends, zones=zones))
                for fut, (zone, probed) in list(self._waiters.items()):
                    if ends.get(zone, 0) > probed:
                        _wake(fut)
        except StoreError:  # closed (or broken): the waiters probe again and find out
            self._notify()
        except BaseException:  # cancelled by close(), or a bug: never strand a waiter
            self._notify()
            raise

    def _finish(self, tx: _Tx) -> None:
        """Write the transaction's feed and spec-version rows; trim the feed in batches
        (at each seq that is a multiple of the trim step, as if written one by one)."""
        self._tx_zones.update(row[0] for row in tx.feed)
        first, last = tx.flush()
        if not last:
            return
        step = last - last % self._trim_every
        if step >= first and step > self._retention:
            self._trim_feed(tx.conn, step - self._retention)

    @staticmethod
    def _trim_feed(conn: sqlite3.Connection, upto: int) -> None:
        # Remember, per zone, the newest seq about to go, before it goes.
        conn.execute(
            "INSERT INTO feed_trimmed (zone, upto)"
            " SELECT zone, max(seq) FROM feed WHERE seq <= ? GROUP BY zone"
            " ON CONFLICT (zone) DO UPDATE SET upto = max(upto, excluded.upto)",
            (upto,),
        )
        conn.execute("DELETE FROM feed WHERE seq <= ?", (upto,))

    # lifecycle --------------------------------------------------------------
    async def init(self) -> None:
        def tx(conn: sqlite3.Connection, now: float) -> None:
            (current,) = conn.execute("PRAGMA user_version").fetchone()
            if current == SCHEMA_VERSION:
                return
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {current} is newer than this Dora's "
                    f"({SCHEMA_VERSION}): upgrade Dora"
                )
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        await self._write(tx)

    async def is_initialized(self) -> bool:
        def rx(conn: sqlite3.Connection) -> bool:
            (current,) = conn.execute("PRAGMA user_version").fetchone()
            return bool(current >= SCHEMA_VERSION)

        return await self._read(rx)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._notify()  # waiters probe again and get "closed"
        watcher = self._watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()
            if watcher.get_loop() is asyncio.get_running_loop():
                await asyncio.gather(watcher, return_exceptions=True)
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)  # before the checkpointer: it hands work there
        self._checkpointer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        if self._wal_index is not None:  # after the connections: see `_ShmFiles`
            self._wal_index.release()
            self._wal_index = None

    # records ----------------------------------------------------------------
    async def create(self, new: NewRecord, *, actor: str, fence: Fence | None = None) -> Record:
        _check_new(new)

        def tx(conn: sqlite3.Connection, now: float) -> Record:
            _tx_check_fence(conn, fence, now)
            steps = _Tx(conn, now, actor)
            record = _tx_create(steps, new, self._hashes)
            self._finish(steps)
            return record

        return await self._write(tx)

    async def get(self, key: Key) -> Record:
        record = await self._read(lambda conn: _rx_get(conn, key))
        if record is None:
            raise NotFound(f"{key} not found")
        return record

    async def get_many(self, keys: Sequence[Key]) -> list[Record]:
        def rx(conn: sqlite3.Connection) -> list[Record]:
            found = (_rx_get(conn, key) for key in keys)
            return [record for record in found if record is not None]

        return await self._read(rx, snapshot=True)

    async def update(
        self,
        key: Key,
        patch: Patch,
        *,
        expected_version: int,
        actor: str,
        fence: Fence | None = None,
    ) -> Record:
        _check_key(key)
        items = patch.items()
        _check_fields(items)

        def tx(conn: sqlite3.Connection, now: float) -> Record:
            _tx_check_fence(conn, fence, now)
            steps = _Tx(conn, now, actor)
            record = _tx_update(steps, key, items, expected_version)
            self._finish(steps)
            return record

        return await self._write(tx)

    async def delete(
        self,
        key: Key,
        *,
        expected_version: int | None = None,
        actor: str,
        fence: Fence | None = None,
    ) -> None:
        _check_key(key)

        def tx(conn: sqlite3.Connection, now: float) -> None:
            _tx_check_fence(conn, fence, now)
            steps = _Tx(conn, now, actor)
            _tx_delete(steps, key, expected_version)
            self._finish(steps)

        await self._write(tx)

    async def batch(
        self,
        writes: Sequence[Write],
        *,
        actor: str,
        fence: Fence | None,
        events: Sequence[Event] = (),
    ) -> list[Record | None]:
        plan = [_plan_write(write) for write in writes]
        for event in events:
            _check_key(event.key)
        if not plan and not events:
            return []

        def tx(conn: sqlite3.Connection, now: float) -> list[Record | None]:
            _tx_check_fence(conn, fence, now)
            steps = _Tx(conn, now, actor)
            out: list[Record | None] = []
            # Records created in this transaction have no events yet: their events
            # need no trimming until they pass EVENT_LIMIT.
            fresh: set[Key] = set()
            uids: dict[Key, str] = {}
            for write, (new, key, items, expected, delete) in zip(writes, plan, strict=True):
                record: Record | None
                if new is not None:
                    record = _tx_create(steps, new, self._hashes)
                    fresh.add(key)
                    uids[key] = record.uid
                elif delete:
                    _tx_delete(steps, key, expected)
                    fresh.discard(key)
                    uids.pop(key, None)
                    record = None
                else:
                    assert expected is not None
                    record = _tx_update(steps, key, items, expected, write.base)
                    uids[key] = record.uid
                out.append(record)
            self._finish(steps)
            if events:
                _tx_add_events(conn, events, fresh, uids)
            return out

        return await self._write(tx)

    async def list_records(
        self,
        kind: str,
        *,
        zone: str | None = None,
        workspace: str | None = None,
        node: str | None = None,
        parent: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        filters = {"zone": zone, "workspace": workspace, "node": node, "parent": parent}
        return await self._read(lambda conn: _rx_list(conn, kind, filters, _limit(limit)))

    async def list_rows(
        self, kind: str, *, zone: str | None = None, workspace: str | None = None
    ) -> list[tuple[Any, ...]]:
        """`list_records` without decoding: each record's 17 columns as stored (see
        `dora.store.common.record_from_row`; spec, meta, computed and observed as JSON
        text), in the same order. For answers that pass the JSON on as it is."""
        filters = {"zone": zone, "workspace": workspace}
        return await self._read(lambda conn: _rx_rows(conn, kind, filters, _limit(None)))

    async def pending(self, zone: str, *, limit: int | None = None) -> list[Record]:
        return await self._read(lambda conn: _rx_pending(conn, zone, _limit(limit)))

    # history ----------------------------------------------------------------
    async def spec_versions(self, key: Key) -> list[SpecVersion]:
        return await self._read(lambda conn: _rx_spec_versions(conn, key))

    async def add_event(self, event: Event) -> None:
        _check_key(event.key)
        await self._write(lambda conn, now: _tx_add_event(conn, event))

    async def events(self, key: Key, *, limit: int = 50) -> list[Event]:
        return await self._read(lambda conn: _rx_events(conn, key, _limit(limit)))

    async def zone_events(self, zone: str, *, since: float = 0.0, limit: int = 100) -> list[Event]:
        return await self._read(lambda conn: _rx_zone_events(conn, zone, since, _limit(limit)))

    # change feed ------------------------------------------------------------
    async def head(self, zone: str) -> Cursor:
        return await self._read(lambda conn: _rx_head(conn, zone), snapshot=True)

    async def changes(self, zone: str, *, after: Cursor | None, limit: int = 1000) -> list[Change]:
        # One snapshot, so the trim watermark and the rows read agree.
        return await self._read(
            lambda conn: _rx_changes(conn, zone, after, _limit(limit)), snapshot=True
        )

    async def wait_changes(
        self, zone: str, *, after: Cursor, max_wait: float, limit: int = 1000
    ) -> list[Change]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(max_wait, 0.0)

        def probe(conn: sqlite3.Connection) -> tuple[list[Change], int]:
            return _rx_changes(conn, zone, after, _limit(limit)), _rx_feed_end(conn)

        while True:
            found, end = await self._read(probe, snapshot=True)
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                return found
            self._check_open()  # closed while we probed: nobody would wake us
            # Any change past `end` (ours, or another process's seen by the watcher)
            # wakes us to probe again; a change in another zone just costs a probe.
            woken: asyncio.Future[None] = loop.create_future()
            self._waiters[woken] = (zone, end)
            self._ensure_watcher(loop)
            try:
                await asyncio.wait([woken], timeout=remaining)
            finally:
                del self._waiters[woken]
                woken.cancel()

    # leases -----------------------------------------------------------------
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        _check_ttl(ttl)
        return await self._write(lambda conn, now: _tx_acquire(conn, now, name, holder, ttl))

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease | None:
        _check_ttl(ttl)

        def tx(conn: sqlite3.Connection, now: float) -> Lease | None:
            row = conn.execute(
                "UPDATE leases SET expires_at = ?"
                " WHERE name = ? AND holder = ? AND token = ? AND expires_at > ?"
                " RETURNING expires_at",
                (now + ttl, lease.name, lease.holder, lease.token, now),
            ).fetchall()
            return Lease(lease.name, lease.holder, lease.token, now + ttl) if row else None

        return await self._write(tx)

    async def release_lease(self, lease: Lease) -> None:
        def tx(conn: sqlite3.Connection, now: float) -> None:
            # Expiry 0, token kept: the next acquire gets token + 1, never a reused one.
            conn.execute(
                "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ? AND token = ?",
                (lease.name, lease.holder, lease.token),
            )

        await self._write(tx)

    async def get_lease(self, name: str) -> Lease | None:
        def rx(conn: sqlite3.Connection) -> Lease | None:
            row = conn.execute(
                "SELECT holder, token, expires_at FROM leases WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else Lease(name, row[0], row[1], row[2])

        return await self._read(rx)

    async def claim_once(self, name: str, ttl: float) -> bool:
        _check_ttl(ttl)
        full = once_name(name)

        def tx(conn: sqlite3.Connection, now: float) -> bool:
            # Expired claims go first (a primary-key range): only live ones stay.
            conn.execute(
                "DELETE FROM leases WHERE name >= ? AND name < ? AND expires_at <= ?",
                (ONCE_PREFIX, ONCE_END, now),
            )
            cur = conn.execute(
                "INSERT INTO leases (name, holder, token, expires_at) VALUES (?, '', 0, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (full, now + ttl),
            )
            return cur.rowcount == 1

        return await self._write(tx)


WAL_VERIFY_S = 1.0
"""How often `SqliteStore.generation` checks the WAL-index header against the pragma."""


class _ShmFiles:
    """One read-only descriptor per ``-shm`` file in this process, shared by the stores
    that read it and closed when the last of them closes (after its connections).

    Why so careful: POSIX record locks belong to the process, and closing *any*
    descriptor of a file drops *all* of the process's locks on it, SQLite's included.
    SQLite holds a shared lock on the ``-shm`` file while it has the database open;
    without it, another process opening the database may truncate and rebuild the
    index under our connections. So a descriptor opened here is never closed while a
    store of this process may still have the database open, and nothing here maps the
    file (an `mmap` keeps a duplicate descriptor that its garbage collection would
    close)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, list[int]] = {}
        """path → [descriptor, stores using it]."""

    def acquire(self, path: Path) -> int | None:
        key = os.path.realpath(path)
        with self._lock:
            held = self._open.get(key)
            if held is None:
                try:
                    fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    return None
                held = self._open[key] = [fd, 0]
            held[1] += 1
            return held[0]

    def release(self, path: Path) -> None:
        key = os.path.realpath(path)
        with self._lock:
            held = self._open.get(key)
            if held is None:
                return
            held[1] -= 1
            if held[1] <= 0:
                del self._open[key]
                os.close(held[0])


_SHM_FILES = _ShmFiles()


class WalIndex:
    """The WAL-index header in a database's ``-shm`` file, read with `os.pread`.

    SQLite's documented WAL format (sqlite.org/walformat.html): the file starts with
    two copies of a 48-byte header. Every commit writes a new one (its ``iChange``
    counter goes up by one), the second copy first, then the first; a reader takes
    them in the other order and trusts them only when they are equal. So the header's
    bytes are a generation: they change with every commit, by any process. One
    ``pread`` costs less than ``PRAGMA data_version`` (a read transaction: two lock
    calls, a ``getpid``, the statement).

    Where the file is not the live index (an SQLite built to keep it elsewhere would
    leave a stale file there), `verify` notices within a second: the pragma saw a
    commit that the header did not. The descriptor is `_SHM_FILES`'s: `release` it
    only once the store's connections are closed."""

    VERSION = 3007000
    """``iVersion``, the first field of the header."""
    SIZE = 48

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.verify_at = time.monotonic() + WAL_VERIFY_S
        self._checked: tuple[int, int] | None = None

    @classmethod
    def open(cls, path: Path) -> WalIndex | None:
        """The index of `path`; None where there is no such file (yet). Whether its
        header can be read is the caller's next question (`header`); either way the
        caller `release`s it once its connections are closed, never before."""
        fd = _SHM_FILES.acquire(path)
        return None if fd is None else cls(path, fd)

    def header(self) -> int | None:
        """The first copy of the header as a number, when both copies agree and it is
        initialised; None otherwise (a writer between the two copies, a file too
        short: the caller asks again next time)."""
        try:
            both = os.pread(self.fd, 2 * self.SIZE, 0)
        except OSError:
            return None
        first = both[: self.SIZE]
        if len(both) != 2 * self.SIZE or first != both[self.SIZE :] or not first[12]:
            return None
        if int.from_bytes(first[:4], sys.byteorder) != self.VERSION:
            return None
        return int.from_bytes(first, "little")

    def verify(self, before: int, version: int, after: int) -> bool:
        """False when the file is not the live index: the pragma's data_version
        (`version`) moved since the last check, but the header read after it
        (`after`) is still the one read before the last check's pragma. Any commit
        the pragma counted since then came after that header was read and before
        `after` was, so a live header must differ. Pure but for the last check kept."""
        checked, self._checked = self._checked, (before, version)
        if checked is None:
            return True
        old_before, old_version = checked
        return not (version != old_version and after == old_before)

    def release(self) -> None:
        """Give the descriptor back (`_SHM_FILES`); call once, after the connections."""
        if self.fd >= 0:
            self.fd = -1
            _SHM_FILES.release(self.path)


def _wake(fut: asyncio.Future[None]) -> None:
    """Resolve a waiter's future from any thread or loop."""
    fut.get_loop().call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
