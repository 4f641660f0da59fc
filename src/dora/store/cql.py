"""CQL backend of the `Store` protocol: ScyllaDB or Apache Cassandra, through scylla-driver.

Selected by ``CONTACT_POINTS`` (`dora.store.config`). Schema: `dora.store.cql_schema`.

Keyspace
    ``DB_NAME`` mapped to a CQL identifier: lower-cased, ``-`` and ``.`` become ``_``,
    and a name not starting with a letter gets a ``dora_`` prefix (``My-Dora.1`` →
    ``my_dora_1``, ``1x`` → ``dora_1x``); at most 48 characters. ``INIT_DB=true``
    creates it with ``NetworkTopologyStrategy`` and ``replication_factor`` =
    ``DORA_CQL_REPLICATION_FACTOR`` (default min(3, number of contact points)); on
    ScyllaDB with ``tablets = {'enabled': false}``, because lightweight transactions
    (every compare-and-set here) are not supported on tablet keyspaces by the ScyllaDB
    versions Dora targets.

Consistency
    Reads and plain writes at ``LOCAL_QUORUM``; compare-and-set as lightweight
    transactions (``IF version = ? AND uid = ?``, ``IF NOT EXISTS``) with serial
    consistency ``SERIAL``; lease reads at ``SERIAL``. With RF=3 one replica may be down
    and everything keeps working; with two down, writes fail with `StoreError`.

Weaker than SQLite (documented, by design)
    * `batch`: every precondition (exists / version / fence) is checked against the
      current records *before* anything is written, so a batch that would fail writes
      nothing in the ordinary case; but the writes are then applied one by one, each
      its own compare-and-set, in order. A concurrent writer that slips in between the
      check and the writes makes the batch stop at that write, with the earlier writes
      kept.
    * Fences are checked by a serial read just before the write, not inside it.
    * Lookup tables (node, parent, pending) and the change feed are written next to
      the record, not atomically with it: an entry is added before and removed after
      the record write, and readers re-check records, so a crash leaves at worst a
      stale entry that is ignored; a feed row lost to a crash is not re-sent.
    * Change-feed order is commit order within one process; across processes it is the
      order of the writers' clocks (timeuuid), so keep clocks synchronised (NTP). A
      reader may miss a change that another process commits with an older timestamp
      after the reader already moved past it.
    * A compare-and-set whose coordinator times out has an unknown outcome: it raises
      `StoreError` ("outcome unknown"); read the record again before retrying.

Change feed and retention
    Rows live in ``(zone, bucket)`` partitions (``feed_bucket`` seconds each; default
    one hour) with a time-UUID per change; the cursor is that UUID. Rows older than
    ``feed_retention`` seconds (default 24 h) are logically trimmed (never returned)
    and physically expire with a TTL of twice that plus an hour. A cursor raises
    `CursorExpired` when the first change after it is older than the retention, or
    when the cursor is so old that the rows after it may have physically expired.
    The head of a quiet zone stays valid forever (``feed_ends`` keeps it).

Async
    Every driver call is ``execute_async``; its callbacks resolve an asyncio future with
    ``loop.call_soon_threadsafe``. Connecting and preparing run in a thread. The event
    loop never blocks on the network.
"""

# CQL text is assembled only from this module's constants and the validated keyspace
# name; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

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
from dora.store.common import check_fields as _check_fields
from dora.store.common import check_key as _check_key
from dora.store.common import check_new as _check_new
from dora.store.common import check_ttl as _check_ttl
from dora.store.common import dumps as _dumps
from dora.store.common import encode as _encode
from dora.store.common import once_name
from dora.store.common import pk as _pk
from dora.store.common import plan_write as _plan_write
from dora.store.common import record_from_row as _record
from dora.store.cql_schema import SCHEMA_VERSION, TABLE_NAMES, TABLES

_KEYSPACE = re.compile(r"[a-z][a-z0-9_]{0,47}")
_START = "start"
"""Cursor of a zone's feed before its first change."""
_UUID_EPOCH = 0x01B21DD213814000  # 100 ns ticks from 1582-10-15 to 1970-01-01
_COLS = (
    "kind, zone, workspace, name, uid, version, spec, meta, desired, computed, observed,"
    " spec_hash, owner, node, parent, created_at, updated_at, spec_number"
)
_PK = "kind = ? AND zone = ? AND workspace = ? AND name = ?"
_EVENT_COLS = "kind, zone, workspace, name, reason, message, actor, at"
_DAY = 86400
_CAS_ATTEMPTS = 8
_READ_ATTEMPTS = 4


def keyspace_name(db_name: str) -> str:
    """``DB_NAME`` → CQL keyspace (see the module docstring)."""
    name = re.sub(r"[-.]", "_", db_name.lower())
    if not name[:1].isalpha():
        name = "dora_" + name
    if not _KEYSPACE.fullmatch(name):
        raise StoreError(f"DB_NAME {db_name!r} does not map to a CQL keyspace (got {name!r})")
    return name


# --------------------------------------------------------------------------- checks
# Validation before any write, so a malformed call never half-writes a batch.


# --------------------------------------------------------------------------- values


def _zk(zone: str) -> str:
    """Partition key of a zone in single-column-key tables (CQL refuses an empty key)."""
    return "/" + zone


def _is_pending(kind: str, node: str, desired: str) -> bool:
    return kind == "Container" and node == "" and desired == "run"


def _uuid_time(u: uuid.UUID) -> float:
    return (u.time - _UUID_EPOCH) / 1e7


def _order(u: uuid.UUID) -> tuple[int, bytes]:
    return (u.time, u.bytes)


def _parse_cursor(cursor: Cursor) -> uuid.UUID:
    try:
        u = uuid.UUID(cursor)
    except (TypeError, ValueError, AttributeError):
        raise CursorExpired(f"{cursor!r} is not a cursor of this feed: resync") from None
    if u.version != 1:
        raise CursorExpired(f"{cursor!r} is not a cursor of this feed: resync")
    return u


class _Ids:
    """Time-UUIDs strictly increasing within this process (one 100 ns tick apart at least)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        rnd = random.SystemRandom()
        self._clock_seq = rnd.getrandbits(14)
        self._node = rnd.getrandbits(48) | 0x010000000000  # multicast bit: not a MAC

    def next(self, now: float) -> uuid.UUID:
        ticks = int(now * 1e7) + _UUID_EPOCH
        with self._lock:
            if ticks <= self._last:
                ticks = self._last + 1
            self._last = ticks
        return uuid.UUID(
            fields=(
                ticks & 0xFFFFFFFF,
                (ticks >> 32) & 0xFFFF,
                ((ticks >> 48) & 0x0FFF) | 0x1000,
                ((self._clock_seq >> 8) & 0x3F) | 0x80,
                self._clock_seq & 0xFF,
                self._node,
            )
        )


_IDS = _Ids()


# --------------------------------------------------------------------------- the store


class CqlStore:
    """`Store` on a CQL keyspace. See the module docstring for the guarantees.

    ``session``: a connected scylla-driver session (`open_store` makes one).
    ``feed_retention``: seconds a change stays readable; ``feed_bucket``: seconds per
    feed partition. ``event_ttl``: seconds events are kept (besides `EVENT_LIMIT`).
    ``replication_factor``: used by `init` to create the keyspace.
    """

    def __init__(
        self,
        session: Any,
        keyspace: str,
        *,
        cluster: Any = None,
        replication_factor: int = 1,
        feed_retention: float = 86400.0,
        feed_bucket: int = 3600,
        event_ttl: int = 7 * _DAY,
        poll_interval: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _KEYSPACE.fullmatch(keyspace):
            raise StoreError(f"invalid keyspace name {keyspace!r}")
        if feed_retention <= 0 or feed_bucket < 1:
            raise ValueError("feed_retention and feed_bucket must be positive")
        self._session = session
        self._cluster = cluster
        self.keyspace = keyspace
        self._rf = replication_factor
        self._retention = float(feed_retention)
        self._bucket = int(feed_bucket)
        self._feed_ttl = int(2 * feed_retention) + 3600
        # Rows younger than this are surely still stored (the TTL minus a margin).
        self._certain = self._feed_ttl - max(60.0, feed_retention / 10)
        self._event_ttl = int(event_ttl)
        self._event_days = max(1, -(-self._event_ttl // _DAY))
        self._poll = poll_interval
        self._clock = clock
        self._prepared: dict[str, Any] = {}
        self._first_written: set[str] = set()
        self._waiters: set[asyncio.Future[None]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"CqlStore({self.keyspace!r})"

    # driver plumbing ----------------------------------------------------------
    async def _prepare(self, cql: str) -> Any:
        stmt = self._prepared.get(cql)
        if stmt is None:
            text = cql.replace("{ks}", self.keyspace)
            try:
                stmt = await asyncio.to_thread(self._session.prepare, text)
            except Exception as exc:
                raise _store_error(exc) from exc
            self._prepared[cql] = stmt
        return stmt

    async def _run(
        self, cql: str, params: Sequence[Any] = (), *, serial_read: bool = False
    ) -> list[Any]:
        """Execute a prepared statement; all rows (every page) as tuples."""
        from cassandra import ConsistencyLevel

        if self._closed:
            raise StoreError(f"{self!r} is closed")
        stmt = await self._prepare(cql)
        bound = stmt.bind(tuple(params))
        bound.consistency_level = (
            ConsistencyLevel.SERIAL if serial_read else ConsistencyLevel.LOCAL_QUORUM
        )
        bound.serial_consistency_level = ConsistencyLevel.SERIAL
        if not cql.startswith("SELECT"):
            return await self._execute(bound)
        # Reads are idempotent: a timeout (an overloaded or failing replica) is retried.
        for attempt in range(_READ_ATTEMPTS):
            try:
                return await self._execute(bound)
            except StoreError as exc:
                if not _read_timeout(exc.__cause__) or attempt == _READ_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    async def _execute(self, statement: Any) -> list[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        rows: list[Any] = []
        try:
            response = self._session.execute_async(statement)
        except Exception as exc:
            raise _store_error(exc) from exc

        def on_page(page: Any) -> None:
            rows.extend(page or ())
            if response.has_more_pages:
                response.start_fetching_next_page()
            else:
                loop.call_soon_threadsafe(_settle, fut, rows, None)

        def on_error(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_settle, fut, None, exc)

        response.add_callbacks(on_page, on_error)
        try:
            return await fut
        except StoreError:
            raise
        except Exception as exc:
            raise _store_error(exc) from exc

    async def _cas(
        self,
        cql: str,
        params: Sequence[Any],
        resolve: Callable[[], Awaitable[bool]] | None = None,
    ) -> tuple[bool, Sequence[Any]]:
        """A lightweight transaction: (applied, the current values when not applied).

        Under contention (or with a replica down) the coordinator may time out with the
        outcome unknown. Then `resolve` reads the row at SERIAL, which first completes
        any in-progress round, and says whether our write is there: if so it counts as
        applied; if not, the transaction is tried again (its condition is checked anew).
        """
        for attempt in range(_CAS_ATTEMPTS):
            try:
                rows = await self._run(cql, params)
            except StoreError as exc:
                if resolve is None or not _cas_timeout(exc.__cause__):
                    raise
                if await self._resolve(resolve):
                    return True, ()
                await asyncio.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
                continue
            if not rows:
                return False, ()
            row = rows[0]
            return bool(row[0]), tuple(row[1:])
        raise StoreError(f"cql: compare-and-set kept timing out ({_CAS_ATTEMPTS} tries)")

    async def _resolve(self, resolve: Callable[[], Awaitable[bool]]) -> bool:
        for attempt in range(_CAS_ATTEMPTS):
            try:
                return await resolve()
            except StoreError as exc:
                if not _read_timeout(exc.__cause__) or attempt == _CAS_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    async def _serial_row(self, key: Key) -> Any | None:
        rows = await self._run(
            f"SELECT uid, version, updated_at FROM {{ks}}.records WHERE {_PK}",
            _pk(key),
            serial_read=True,
        )
        return rows[0] if rows else None

    async def _simple(self, text: str, limit: float = 60.0) -> None:
        """Unprepared statement (DDL); waits for schema agreement in the driver."""
        from cassandra.query import SimpleStatement

        stmt = SimpleStatement(text.replace("{ks}", self.keyspace))
        try:
            await asyncio.to_thread(self._session.execute, stmt, timeout=limit)
        except Exception as exc:
            raise _store_error(exc) from exc

    def _notify(self) -> None:
        for fut in list(self._waiters):
            fut.get_loop().call_soon_threadsafe(_settle, fut, None, None)

    # lifecycle ----------------------------------------------------------------
    async def init(self) -> None:
        if await self.is_initialized():
            return
        is_scylla = await asyncio.to_thread(self._is_scylla)
        tablets = " AND tablets = {'enabled': false}" if is_scylla else ""
        await self._simple(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
            f"{{'class': 'NetworkTopologyStrategy', 'replication_factor': {int(self._rf)}}}"
            + tablets
        )
        for table in TABLES:
            await self._simple(table)
        await self._run(
            "INSERT INTO {ks}.dora_schema (name, version) VALUES ('schema', ?)",
            (SCHEMA_VERSION,),
        )

    def _is_scylla(self) -> bool:
        rows = list(
            self._session.execute(
                "SELECT keyspace_name FROM system_schema.tables "
                "WHERE keyspace_name = 'system' "
                "AND table_name = 'scylla_local'"
            )
        )
        return bool(rows)

    async def is_initialized(self) -> bool:
        from cassandra import InvalidRequest

        try:
            rows = await self._run("SELECT version FROM {ks}.dora_schema WHERE name = 'schema'")
        except StoreError as exc:
            if isinstance(exc.__cause__, InvalidRequest):
                self._prepared.clear()
                return False
            raise
        if not rows:
            return False
        current = int(rows[0][0])
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"keyspace {self.keyspace}: schema version {current} is newer than this "
                f"Dora's ({SCHEMA_VERSION}): upgrade Dora"
            )
        return current >= SCHEMA_VERSION

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._notify()
        if self._cluster is not None:
            await asyncio.to_thread(self._cluster.shutdown)

    async def truncate_all(self) -> None:
        """Empty every table (tests: a fresh store without re-creating the schema)."""
        for table in TABLE_NAMES:
            if table != "dora_schema":
                await self._simple(f"TRUNCATE {{ks}}.{table}")
        self._first_written.clear()

    # fences -------------------------------------------------------------------
    async def _check_fence(self, fence: Fence | None) -> None:
        if fence is None:
            return
        rows = await self._run(
            "SELECT fencing_token, expires_at FROM {ks}.leases WHERE name = ?",
            (fence.name,),
            serial_read=True,
        )
        now = self._clock()
        if not rows or rows[0][0] != fence.token or rows[0][1] <= now:
            raise FencedOut(f"lease {fence.name!r} is no longer held with token {fence.token}")

    # record rows --------------------------------------------------------------
    async def _row(self, key: Key) -> Any | None:
        rows = await self._run(f"SELECT {_COLS} FROM {{ks}}.records WHERE {_PK}", _pk(key))
        return rows[0] if rows else None

    async def _index_add(
        self, key: Key, node: str, parent: str, desired: str, created_at: float
    ) -> None:
        writes = [
            self._run(
                "INSERT INTO {ks}.scopes (kind, zone, workspace) VALUES (?, ?, ?)",
                (key.kind, key.zone, key.workspace),
            )
        ]
        if node:
            writes.append(
                self._run(
                    "INSERT INTO {ks}.by_node (kind, zone, node, workspace, name)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key.kind, key.zone, node, key.workspace, key.name),
                )
            )
        if parent:
            writes.append(
                self._run(
                    "INSERT INTO {ks}.by_parent (kind, zone, workspace, parent, name)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key.kind, key.zone, key.workspace, parent, key.name),
                )
            )
        if _is_pending(key.kind, node, desired):
            writes.append(
                self._run(
                    "INSERT INTO {ks}.pending (zone, created_at, workspace, name)"
                    " VALUES (?, ?, ?, ?)",
                    (_zk(key.zone), created_at, key.workspace, key.name),
                )
            )
        await asyncio.gather(*writes)

    async def _index_remove(
        self,
        key: Key,
        old: tuple[str, str, str],
        new: tuple[str, str, str] | None,
        created_at: float,
    ) -> None:
        """Drop the lookup entries of the old (node, parent, desired) the new lacks."""
        node, parent, desired = old
        new_node, new_parent, new_desired = new or ("", "", "")
        writes = []
        if node and (new is None or new_node != node):
            writes.append(
                self._run(
                    "DELETE FROM {ks}.by_node WHERE kind = ? AND zone = ? AND node = ?"
                    " AND workspace = ? AND name = ?",
                    (key.kind, key.zone, node, key.workspace, key.name),
                )
            )
        if parent and (new is None or new_parent != parent):
            writes.append(
                self._run(
                    "DELETE FROM {ks}.by_parent WHERE kind = ? AND zone = ? AND workspace = ?"
                    " AND parent = ? AND name = ?",
                    (key.kind, key.zone, key.workspace, parent, key.name),
                )
            )
        was = _is_pending(key.kind, node, desired)
        if was and (new is None or not _is_pending(key.kind, new_node, new_desired)):
            writes.append(
                self._run(
                    "DELETE FROM {ks}.pending WHERE zone = ? AND created_at = ?"
                    " AND workspace = ? AND name = ?",
                    (_zk(key.zone), created_at, key.workspace, key.name),
                )
            )
        if writes:
            await asyncio.gather(*writes)

    async def _spec_version(
        self, uid: str, number: int, spec_json: str, digest: str, actor: str, now: float
    ) -> None:
        await self._run(
            "INSERT INTO {ks}.spec_versions (uid, number, spec, spec_hash, actor, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (uid, number, spec_json, digest, actor, now),
        )
        if number > HISTORY_LIMIT:
            await self._run(
                "DELETE FROM {ks}.spec_versions WHERE uid = ? AND number <= ?",
                (uid, number - HISTORY_LIMIT),
            )

    async def _append_feed(
        self, key: Key, op: ChangeOp, version: int, parts: Sequence[str], now: float
    ) -> None:
        change_id = _IDS.next(now)
        at = _uuid_time(change_id)
        micros = change_id.time // 10
        await self._run(
            "INSERT INTO {ks}.feed (zone, bucket, id, op, kind, workspace, name, version,"
            " parts, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            (
                key.zone,
                int(at // self._bucket),
                change_id,
                op,
                key.kind,
                key.workspace,
                key.name,
                version,
                ",".join(parts),
                now,
                self._feed_ttl,
            ),
        )
        # The newest id wins by write timestamp; the oldest wins by an inverted one.
        # first_id goes first: a reader that sees last_id must also see a first_id.
        if key.zone not in self._first_written:
            await self._run(
                "UPDATE {ks}.feed_ends USING TIMESTAMP ? SET first_id = ? WHERE zone = ?",
                ((1 << 62) - micros, change_id, _zk(key.zone)),
            )
            self._first_written.add(key.zone)
        await self._run(
            "UPDATE {ks}.feed_ends USING TIMESTAMP ? SET last_id = ? WHERE zone = ?",
            (micros, change_id, _zk(key.zone)),
        )
        self._notify()

    # write steps (no fence check) ---------------------------------------------
    async def _create(self, new: NewRecord, actor: str) -> Record:
        now = self._clock()
        uid = uuid.uuid4().hex
        digest = spec_hash(new.spec)
        spec_json = _dumps(new.spec)
        key = new.key
        await self._index_add(key, new.node, new.parent, new.desired, now)
        values = (
            *_pk(key),
            uid,
            1,
            spec_json,
            _dumps(new.meta),
            new.desired,
            _encode("computed", new.computed),
            _encode("observed", new.observed),
            digest,
            new.owner,
            new.node,
            new.parent,
            now,
            now,
            1,
        )

        async def resolve() -> bool:
            row = await self._serial_row(key)
            return row is not None and row[0] == uid

        applied, _ = await self._cas(
            f"INSERT INTO {{ks}}.records ({_COLS}) VALUES ({', '.join('?' * 18)}) IF NOT EXISTS",
            values,
            resolve,
        )
        if not applied:
            if _is_pending(key.kind, new.node, new.desired):  # our entry, never valid
                await self._index_remove(key, (new.node, "", new.desired), None, now)
            raise AlreadyExists(f"{key} already exists")
        await asyncio.gather(
            self._spec_version(uid, 1, spec_json, digest, actor, now),
            self._append_feed(key, "create", 1, FIELDS, now),
        )
        return _record(values)

    async def _update(
        self, key: Key, items: Mapping[str, Any], expected: int, actor: str
    ) -> Record:
        row = await self._row(key)
        if row is None:
            raise NotFound(f"{key} not found")
        version, uid, old_digest, spec_number = row[5], row[4], row[11], row[17]
        if version != expected:
            raise Conflict(key, expected, version)
        now = self._clock()
        new_row = list(row)
        new_row[5] = version + 1
        new_row[16] = now
        positions = {"spec": 6, "meta": 7, "desired": 8, "computed": 9, "observed": 10,
                     "node": 13, "parent": 14}  # fmt: skip
        for name, value in items.items():
            new_row[positions[name]] = _encode(name, value)
        digest = spec_hash(items["spec"]) if "spec" in items else old_digest
        number = spec_number + 1 if digest != old_digest else spec_number
        new_row[11], new_row[17] = digest, number
        node, parent, desired = new_row[13], new_row[14], new_row[8]
        await self._index_add(key, node, parent, desired, row[15])
        sets = ["version = ?", "updated_at = ?", "spec_hash = ?", "spec_number = ?"]
        params: list[Any] = [version + 1, now, digest, number]
        for name, value in items.items():
            sets.append(f"{name} = ?")
            params.append(_encode(name, value))

        async def resolve() -> bool:
            found = await self._serial_row(key)
            return found is not None and tuple(found) == (uid, version + 1, now)

        applied, current = await self._cas(
            f"UPDATE {{ks}}.records SET {', '.join(sets)} WHERE {_PK} IF version = ? AND uid = ?",
            (*params, *_pk(key), version, uid),
            resolve,
        )
        if not applied:
            if not current or current[0] is None:
                raise NotFound(f"{key} not found")
            raise Conflict(key, expected, current[0])
        steps = [
            self._index_remove(key, (row[13], row[14], row[8]), (node, parent, desired), row[15]),
            self._append_feed(key, "update", version + 1, tuple(items), now),
        ]
        if digest != old_digest:
            steps.append(self._spec_version(uid, number, _dumps(items["spec"]), digest, actor, now))
        await asyncio.gather(*steps)
        return _record(new_row)

    async def _delete(self, key: Key, expected: int | None) -> None:
        while True:
            row = await self._row(key)
            if row is None:
                raise NotFound(f"{key} not found")
            version, uid = row[5], row[4]
            if expected is not None and version != expected:
                raise Conflict(key, expected, version)

            async def resolve(uid: str = uid) -> bool:
                found = await self._serial_row(key)
                return found is None or found[0] != uid

            applied, current = await self._cas(
                f"DELETE FROM {{ks}}.records WHERE {_PK} IF version = ? AND uid = ?",
                (*_pk(key), version, uid),
                resolve,
            )
            if applied:
                break
            if not current or current[0] is None:
                raise NotFound(f"{key} not found")
            if expected is not None:
                raise Conflict(key, expected, current[0])
            # Changed under us with no expected version: read again and retry.
        now = self._clock()
        await self._index_remove(key, (row[13], row[14], row[8]), None, row[15])
        await self._drop_history(uid)
        await self._append_feed(key, "delete", version, FIELDS, now)

    async def _drop_history(self, uid: str) -> None:
        events = await self._run(
            "SELECT zone, zbucket, at, id FROM {ks}.events WHERE uid = ?", (uid,)
        )
        await asyncio.gather(
            *(
                self._run(
                    "DELETE FROM {ks}.zone_events WHERE zone = ? AND bucket = ?"
                    " AND at = ? AND id = ?",
                    tuple(event),
                )
                for event in events
            )
        )
        await self._run("DELETE FROM {ks}.events WHERE uid = ?", (uid,))
        await self._run("DELETE FROM {ks}.spec_versions WHERE uid = ?", (uid,))

    async def _add_event(self, event: Event) -> None:
        row = await self._row(event.key)
        if row is None:
            raise NotFound(f"{event.key} not found: no record to attach the event to")
        uid = row[4]
        now = self._clock()
        event_id = _IDS.next(now)
        zbucket = int(now // _DAY)
        k = event.key
        await asyncio.gather(
            self._run(
                "INSERT INTO {ks}.events (uid, at, id, kind, zone, workspace, name, reason,"
                " message, actor, zbucket) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
                (
                    uid,
                    event.at,
                    event_id,
                    *_pk(k),
                    event.reason,
                    event.message,
                    event.actor,
                    zbucket,
                    self._event_ttl,
                ),
            ),
            self._run(
                "INSERT INTO {ks}.zone_events (zone, bucket, at, id, kind, workspace, name,"
                " reason, message, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
                (
                    k.zone,
                    zbucket,
                    event.at,
                    event_id,
                    k.kind,
                    k.workspace,
                    k.name,
                    event.reason,
                    event.message,
                    event.actor,
                    self._event_ttl,
                ),
            ),
        )
        kept = await self._run(
            "SELECT zone, zbucket, at, id FROM {ks}.events WHERE uid = ? LIMIT ?",
            (uid, EVENT_LIMIT + 16),
        )
        for zone, bucket, at, old_id in kept[EVENT_LIMIT:]:
            await asyncio.gather(
                self._run(
                    "DELETE FROM {ks}.events WHERE uid = ? AND at = ? AND id = ?",
                    (uid, at, old_id),
                ),
                self._run(
                    "DELETE FROM {ks}.zone_events WHERE zone = ? AND bucket = ?"
                    " AND at = ? AND id = ?",
                    (zone, bucket, at, old_id),
                ),
            )

    # records ------------------------------------------------------------------
    async def create(self, new: NewRecord, *, actor: str, fence: Fence | None = None) -> Record:
        _check_new(new)
        await self._check_fence(fence)
        return await self._create(new, actor)

    async def get(self, key: Key) -> Record:
        row = await self._row(key)
        if row is None:
            raise NotFound(f"{key} not found")
        return _record(row)

    async def get_many(self, keys: Sequence[Key]) -> list[Record]:
        rows = await asyncio.gather(*(self._row(key) for key in keys))
        return [_record(row) for row in rows if row is not None]

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
        await self._check_fence(fence)
        return await self._update(key, items, expected_version, actor)

    async def delete(
        self,
        key: Key,
        *,
        expected_version: int | None = None,
        actor: str,
        fence: Fence | None = None,
    ) -> None:
        _check_key(key)
        await self._check_fence(fence)
        await self._delete(key, expected_version)

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
        await self._check_fence(fence)
        # Check every precondition against the current records before writing anything.
        keys = list(dict.fromkeys(key for _, key, _, _, _ in plan))
        rows = await asyncio.gather(*(self._row(key) for key in keys))
        state: dict[Key, int | None] = {
            key: (None if row is None else row[5]) for key, row in zip(keys, rows, strict=True)
        }
        for new, key, _, expected, delete in plan:
            current = state[key]
            if new is not None:
                if current is not None:
                    raise AlreadyExists(f"{key} already exists")
                state[key] = 1
            elif current is None:
                raise NotFound(f"{key} not found")
            elif expected is not None and current != expected:
                raise Conflict(key, expected, current)
            else:
                state[key] = None if delete else current + 1
        out: list[Record | None] = []
        for new, key, items, expected, delete in plan:
            if new is not None:
                out.append(await self._create(new, actor))
            elif delete:
                await self._delete(key, expected)
                out.append(None)
            else:
                assert expected is not None
                out.append(await self._update(key, items, expected, actor))
        for event in events:
            with contextlib.suppress(NotFound):
                await self._add_event(event)
        return out

    async def _zones(self, kind: str) -> list[str]:
        rows = await self._run("SELECT zone FROM {ks}.scopes WHERE kind = ?", (kind,))
        return list(dict.fromkeys(row[0] for row in rows))

    async def _scopes(
        self, kind: str, zone: str | None, workspace: str | None
    ) -> list[tuple[str, str]]:
        if zone is not None and workspace is not None:
            return [(zone, workspace)]
        if zone is not None:
            rows = await self._run(
                "SELECT zone, workspace FROM {ks}.scopes WHERE kind = ? AND zone = ?",
                (kind, zone),
            )
        else:
            rows = await self._run(
                "SELECT zone, workspace FROM {ks}.scopes WHERE kind = ?", (kind,)
            )
        return [(z, w) for z, w in rows if workspace is None or w == workspace]

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
        if limit is not None and limit <= 0:
            return []
        candidates: list[Record]
        if node:
            zones = [zone] if zone is not None else await self._zones(kind)
            parts = await asyncio.gather(
                *(
                    self._run(
                        "SELECT workspace, name FROM {ks}.by_node"
                        " WHERE kind = ? AND zone = ? AND node = ?",
                        (kind, z, node),
                    )
                    for z in zones
                )
            )
            keys = [
                Key(kind, z, w, n)
                for z, rows in zip(zones, parts, strict=True)
                for w, n in rows
                if workspace is None or w == workspace
            ]
            candidates = await self.get_many(keys)
        elif parent:
            scopes = await self._scopes(kind, zone, workspace)
            parts = await asyncio.gather(
                *(
                    self._run(
                        "SELECT name FROM {ks}.by_parent"
                        " WHERE kind = ? AND zone = ? AND workspace = ? AND parent = ?",
                        (kind, z, w, parent),
                    )
                    for z, w in scopes
                )
            )
            keys = [
                Key(kind, z, w, row[0]) for (z, w), rows in zip(scopes, parts, strict=True)
                for row in rows
            ]  # fmt: skip
            candidates = await self.get_many(keys)
        else:
            scopes = await self._scopes(kind, zone, workspace)
            parts = await asyncio.gather(
                *(
                    self._run(
                        f"SELECT {_COLS} FROM {{ks}}.records"
                        " WHERE kind = ? AND zone = ? AND workspace = ?",
                        (kind, z, w),
                    )
                    for z, w in scopes
                )
            )
            candidates = [_record(row) for rows in parts for row in rows]
        found = [
            r
            for r in candidates
            if (node is None or r.node == node) and (parent is None or r.parent == parent)
        ]
        found.sort(key=lambda r: r.key)
        return found if limit is None else found[:limit]

    async def pending(self, zone: str, *, limit: int | None = None) -> list[Record]:
        if limit is not None and limit <= 0:
            return []
        rows = await self._run(
            "SELECT created_at, workspace, name FROM {ks}.pending WHERE zone = ?", (_zk(zone),)
        )
        out: list[Record] = []
        chunk = max(16, limit or 0)
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            records = await asyncio.gather(
                *(self._row(Key("Container", zone, w, n)) for _, w, n in part)
            )
            for (created_at, _, _), row in zip(part, records, strict=True):
                if row is None:
                    continue
                record = _record(row)
                if record.created_at == created_at and _is_pending(
                    "Container", record.node, record.desired
                ):
                    out.append(record)
            if limit is not None and len(out) >= limit:
                return out[:limit]
        return out

    # history ------------------------------------------------------------------
    async def spec_versions(self, key: Key) -> list[SpecVersion]:
        row = await self._row(key)
        if row is None:
            return []
        uid, newest = row[4], row[17]
        rows = await self._run(
            "SELECT number, spec, spec_hash, actor, at FROM {ks}.spec_versions"
            " WHERE uid = ? AND number > ?",
            (uid, newest - HISTORY_LIMIT),
        )
        return [
            SpecVersion(key, uid, number, json.loads(spec), digest, actor, at)
            for number, spec, digest, actor, at in rows
        ]

    async def add_event(self, event: Event) -> None:
        _check_key(event.key)
        await self._add_event(event)

    async def events(self, key: Key, *, limit: int = 50) -> list[Event]:
        if limit <= 0:
            return []
        row = await self._row(key)
        if row is None:
            return []
        rows = await self._run(
            f"SELECT {_EVENT_COLS} FROM {{ks}}.events WHERE uid = ? LIMIT ?",
            (row[4], min(limit, EVENT_LIMIT)),
        )
        return [Event(Key(*r[0:4]), r[4], r[5], r[6], r[7]) for r in reversed(rows)]

    async def zone_events(self, zone: str, *, since: float = 0.0, limit: int = 100) -> list[Event]:
        if limit <= 0:
            return []
        today = int(self._clock() // _DAY)
        buckets = range(today + 1, today - self._event_days - 1, -1)
        parts = await asyncio.gather(
            *(
                self._run(
                    "SELECT at, id, kind, workspace, name, reason, message, actor"
                    " FROM {ks}.zone_events WHERE zone = ? AND bucket = ? AND at >= ? LIMIT ?",
                    (zone, bucket, since, limit),
                )
                for bucket in buckets
            )
        )
        rows = [row for part in parts for row in part]
        rows.sort(key=lambda r: (r[0], _order(r[1])), reverse=True)
        return [
            Event(Key(kind, zone, workspace, name), reason, message, actor, at)
            for at, _, kind, workspace, name, reason, message, actor in reversed(rows[:limit])
        ]

    # change feed --------------------------------------------------------------
    async def _ends(self, zone: str) -> tuple[uuid.UUID | None, uuid.UUID | None]:
        rows = await self._run(
            "SELECT first_id, last_id FROM {ks}.feed_ends WHERE zone = ?", (_zk(zone),)
        )
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    async def head(self, zone: str) -> Cursor:
        _, last = await self._ends(zone)
        return _START if last is None else str(last)

    async def changes(self, zone: str, *, after: Cursor | None, limit: int = 1000) -> list[Change]:
        if after is not None and after != _START:
            cursor: uuid.UUID | None = _parse_cursor(after)
        else:
            cursor = None
        first, last = await self._ends(zone)
        now = self._clock()
        horizon = now - self._retention
        if last is None:
            if cursor is not None:
                raise CursorExpired(f"{after!r} is not a cursor of zone {zone!r}: resync")
            return []
        if cursor is not None and _order(cursor) >= _order(last):
            return []  # nothing after it (a head, even of a fully trimmed zone)
        if after is None:
            start = horizon
        elif cursor is None:  # the start of the feed
            if first is None:
                # A writer set last_id but its first_id is not visible yet (another
                # process, another coordinator): read what the retention still holds.
                start = horizon
            else:
                first_time = _uuid_time(first)
                if first_time < horizon:
                    raise CursorExpired(f"zone {zone!r}: its first changes were trimmed: resync")
                start = first_time
        else:
            start = _uuid_time(cursor)
            if start < now - self._certain:
                raise CursorExpired(f"zone {zone!r}: cursor {after} is too old: resync")
        if limit <= 0:
            return []
        out: list[Change] = []
        bucket = int(start // self._bucket)
        end = int((now + 1.0) // self._bucket)
        while bucket <= end and len(out) < limit:
            if cursor is not None and bucket == int(_uuid_time(cursor) // self._bucket):
                rows = await self._run(
                    "SELECT id, op, kind, workspace, name, version, parts, at FROM {ks}.feed"
                    " WHERE zone = ? AND bucket = ? AND id > ? LIMIT ?",
                    (zone, bucket, cursor, limit - len(out)),
                )
            else:
                rows = await self._run(
                    "SELECT id, op, kind, workspace, name, version, parts, at FROM {ks}.feed"
                    " WHERE zone = ? AND bucket = ? LIMIT ?",
                    (zone, bucket, limit - len(out)),
                )
            for change_id, op, kind, workspace, name, version, parts, at in rows:
                if _uuid_time(change_id) < horizon:
                    if after is not None and not out:
                        raise CursorExpired(
                            f"zone {zone!r}: changes after {after} were trimmed: resync"
                        )
                    continue
                out.append(
                    Change(
                        str(change_id),
                        op,
                        Key(kind, zone, workspace, name),
                        version,
                        tuple(parts.split(",")) if parts else (),
                        at,
                    )
                )
            bucket += 1
        return out[:limit]

    async def wait_changes(
        self, zone: str, *, after: Cursor, max_wait: float, limit: int = 1000
    ) -> list[Change]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(max_wait, 0.0)
        while True:
            woken: asyncio.Future[None] = loop.create_future()
            self._waiters.add(woken)
            try:
                found = await self.changes(zone, after=after, limit=limit)
                remaining = deadline - loop.time()
                if found or remaining <= 0:
                    return found
                if self._closed:
                    raise StoreError(f"{self!r} is closed")
                # Our own writes wake us at once; other processes' within poll_interval.
                await asyncio.wait([woken], timeout=min(self._poll, remaining))
            finally:
                self._waiters.discard(woken)
                woken.cancel()

    # leases -------------------------------------------------------------------
    async def _lease_row(self, name: str) -> tuple[str, int, float] | None:
        rows = await self._run(
            "SELECT holder, fencing_token, expires_at FROM {ks}.leases WHERE name = ?",
            (name,),
            serial_read=True,
        )
        return None if not rows else (rows[0][0], rows[0][1], rows[0][2])

    def _lease_is(
        self, name: str, expected: tuple[str, int, float], *, gone_ok: bool = False
    ) -> Callable[[], Awaitable[bool]]:
        async def resolve() -> bool:
            row = await self._lease_row(name)
            if row == expected:
                return True
            # Release: nothing left to do once the lease changed hands.
            return gone_ok and (row is None or row[:2] != expected[:2])

        return resolve

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        _check_ttl(ttl)
        for _ in range(50):
            row = await self._lease_row(name)
            now = self._clock()
            if row is None:
                applied, _ = await self._cas(
                    "INSERT INTO {ks}.leases (name, holder, fencing_token, expires_at)"
                    " VALUES (?, ?, 1, ?) IF NOT EXISTS",
                    (name, holder, now + ttl),
                    self._lease_is(name, (holder, 1, now + ttl)),
                )
                if applied:
                    return Lease(name, holder, 1, now + ttl)
                continue
            old_holder, old_token, old_expiry = row
            if old_expiry > now:
                if old_holder != holder:
                    return None
                token = old_token
            else:
                token = old_token + 1
            applied, _ = await self._cas(
                "UPDATE {ks}.leases SET holder = ?, fencing_token = ?, expires_at = ?"
                " WHERE name = ?"
                " IF holder = ? AND fencing_token = ? AND expires_at = ?",
                (holder, token, now + ttl, name, old_holder, old_token, old_expiry),
                self._lease_is(name, (holder, token, now + ttl)),
            )
            if applied:
                return Lease(name, holder, token, now + ttl)
        raise StoreError(f"lease {name!r}: too much contention, try again")

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease | None:
        _check_ttl(ttl)
        now = self._clock()
        applied, _ = await self._cas(
            "UPDATE {ks}.leases SET expires_at = ? WHERE name = ?"
            " IF holder = ? AND fencing_token = ? AND expires_at > ?",
            (now + ttl, lease.name, lease.holder, lease.token, now),
            self._lease_is(lease.name, (lease.holder, lease.token, now + ttl)),
        )
        return Lease(lease.name, lease.holder, lease.token, now + ttl) if applied else None

    async def release_lease(self, lease: Lease) -> None:
        await self._cas(
            "UPDATE {ks}.leases SET expires_at = 0 WHERE name = ?"
            " IF holder = ? AND fencing_token = ?",
            (lease.name, lease.holder, lease.token),
            self._lease_is(lease.name, (lease.holder, lease.token, 0.0), gone_ok=True),
        )

    async def get_lease(self, name: str) -> Lease | None:
        row = await self._lease_row(name)
        return None if row is None else Lease(name, *row)

    async def claim_once(self, name: str, ttl: float) -> bool:
        _check_ttl(ttl)
        full = once_name(name)
        # A holder of our own, so an outcome-unknown timeout can be told apart; the row
        # TTL (whole seconds, rounded up) drops the claim some time after it expires.
        mine = (secrets.token_hex(8), 0, self._clock() + ttl)
        applied, _ = await self._cas(
            "INSERT INTO {ks}.leases (name, holder, fencing_token, expires_at)"
            " VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
            (full, *mine, math.ceil(ttl) + 1),
            self._lease_is(full, mine),
        )
        return applied


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _cas_timeout(exc: BaseException | None) -> bool:
    from cassandra import WriteTimeout
    from cassandra.policies import WriteType

    return isinstance(exc, WriteTimeout) and getattr(exc, "write_type", None) == WriteType.CAS


def _read_timeout(exc: BaseException | None) -> bool:
    from cassandra import OperationTimedOut, ReadTimeout, WriteTimeout

    return isinstance(exc, ReadTimeout | WriteTimeout | OperationTimedOut)


def _store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if _cas_timeout(exc):
        return StoreError(f"cql: compare-and-set timed out, outcome unknown: read again ({exc})")
    return StoreError(f"cql: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- opening


def connect(
    contact_points: Sequence[tuple[str, int]], *, connect_timeout: float = 10.0
) -> tuple[Any, Any]:
    """(cluster, session) to the given host:port list (blocking: call it in a thread)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
    from cassandra.query import tuple_factory

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        request_timeout=float(os.environ.get("DORA_CQL_REQUEST_TIMEOUT", "15")),
        row_factory=tuple_factory,
    )
    ports = {port for _, port in contact_points}
    cluster = Cluster(
        contact_points=[host for host, _ in contact_points],
        port=ports.pop() if len(ports) == 1 else 9042,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=4,
        connect_timeout=connect_timeout,
        control_connection_timeout=connect_timeout,
    )
    try:
        session = cluster.connect()
    except Exception:
        cluster.shutdown()
        raise
    return cluster, session


async def open_store(settings: Any) -> CqlStore:
    """The `dora.store.config` entry point: connect (in a thread) and wrap a `CqlStore`.

    ``DORA_CQL_REPLICATION_FACTOR`` overrides the default min(3, contact points).
    """
    points = tuple(settings.contact_points)
    if not points:
        raise StoreError("CONTACT_POINTS is empty")
    keyspace = keyspace_name(settings.db_name)
    rf_text = os.environ.get("DORA_CQL_REPLICATION_FACTOR", "")
    try:
        rf = int(rf_text) if rf_text else min(3, len(points))
    except ValueError:
        raise StoreError(f"DORA_CQL_REPLICATION_FACTOR={rf_text!r}: expected a number") from None
    if rf < 1:
        raise StoreError("DORA_CQL_REPLICATION_FACTOR must be at least 1")
    try:
        cluster, session = await asyncio.to_thread(connect, points)
    except Exception as exc:
        raise StoreError(f"cannot connect to CONTACT_POINTS {points}: {exc}") from exc
    return CqlStore(session, keyspace, cluster=cluster, replication_factor=rf)
