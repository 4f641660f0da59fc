"""SQLite-specific behaviour the conformance suite cannot see: pragmas, query plans,
exact expiry boundaries (injected clock), trim batching, lifecycle and validation."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dora.store import (
    CursorExpired,
    Fence,
    FencedOut,
    Key,
    NewRecord,
    Patch,
    StoreError,
    Write,
)
from dora.store import sqlite as backend
from dora.store.sqlite import SqliteStore


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def new(name: str, **fields: Any) -> NewRecord:
    return NewRecord(
        key=Key("Container", "z1", "w1", name), spec={"image": "x"}, owner="o", **fields
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "t.sqlite3", clock=clock)
    await s.init()
    yield s
    await s.close()


async def test_file_is_wal_and_synchronous_is_as_configured(tmp_path: Path) -> None:
    for setting, code in (("NORMAL", 1), ("FULL", 2)):
        s = SqliteStore(tmp_path / f"{setting}.sqlite3", synchronous=setting)  # type: ignore[arg-type]
        await s.init()
        assert await s._read(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == code
        await s.close()
        raw = sqlite3.connect(tmp_path / f"{setting}.sqlite3")
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        raw.close()


async def test_writes_are_checkpointed_in_the_background_not_in_the_commit(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.sqlite3"
    s = SqliteStore(db)
    await s.init()
    pages = await s._write(lambda c, now: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    assert pages == backend.BACKSTOP_PAGES  # SQLite's checkpoint in a commit: a backstop
    size = db.stat().st_size
    # A few hundred WAL pages: far below the 1000 at which a commit would checkpoint.
    for i in range(backend.CHECKPOINT_COMMITS + 1):
        await s.create(new(f"c{i}"), actor="x")
    # The checkpoint thread copied the log into the database file (which grew).
    await until(lambda: db.stat().st_size > size)
    raw = sqlite3.connect(db)
    (busy, log_frames, done) = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    raw.close()
    assert busy == 0 and done == log_frames
    await s.close()
    assert not s._checkpointer._threads or all(not t.is_alive() for t in s._checkpointer._threads)


async def test_init_is_idempotent_and_is_initialized_reports_it(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "t.sqlite3")
    assert not await s.is_initialized()
    with pytest.raises(StoreError, match="init"):
        await s.get(Key("A", "", "", "a"))
    await s.init()
    await s.create(new("a"), actor="x")
    await s.init()
    assert await s.is_initialized()
    assert len(await s.list_records("Container")) == 1
    await s.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "t.sqlite3")
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    s = SqliteStore(tmp_path / "t.sqlite3")
    with pytest.raises(StoreError, match="newer"):
        await s.init()
    await s.close()


async def test_processes_initialising_a_fresh_file_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite3"
    script = (
        "import asyncio, sys\n"
        "from dora.store.sqlite import SqliteStore\n"
        "async def main():\n"
        "    s = SqliteStore(sys.argv[1])\n"
        "    await s.init()\n"
        "    assert await s.is_initialized()\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(path), stderr=asyncio.subprocess.PIPE
        )
        for _ in range(4)
    ]
    try:
        for proc in procs:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_a_writer_retries_its_begin_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.sqlite3"
    store = SqliteStore(db, busy_timeout=30)
    await store.init()
    conn = await store._write(lambda c, now: c)  # the writer thread's connection
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0  # not SQLite's handler
    begins: list[str] = []
    conn.set_trace_callback(lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None)
    other = sqlite3.connect(db, isolation_level=None)  # stands in for another process
    other.execute("BEGIN IMMEDIATE")
    creating = asyncio.create_task(store.create(new("a"), actor="x"))
    await until(lambda: len(begins) >= 3)  # tried, and tried again, in small steps
    assert not creating.done()
    other.execute("COMMIT")
    created = await asyncio.wait_for(creating, 5)
    assert created.key.name == "a"
    conn.set_trace_callback(None)
    other.close()
    await store.close()


async def test_a_writer_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite3"
    store = SqliteStore(db, busy_timeout=0.2)
    await store.init()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match="database busy"):
        await asyncio.wait_for(store.create(new("a"), actor="x"), 10)
    other.execute("ROLLBACK")
    other.close()
    await store.close()


async def test_closed_store_refuses_calls_and_wakes_waiters(store: SqliteStore) -> None:
    head = await store.head("z1")
    waiting = asyncio.create_task(store.wait_changes("z1", after=head, max_wait=30))
    await until(lambda: bool(store._waiters))
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(StoreError, match="closed"):
        await store.get(Key("A", "", "", "a"))
    await store.close()  # idempotent


async def test_timestamps_come_from_the_clock(store: SqliteStore, clock: FakeClock) -> None:
    created = await store.create(new("a"), actor="x")
    clock.now += 5
    updated = await store.update(created.key, Patch(node="n"), expected_version=1, actor="x")
    assert (created.created_at, updated.created_at, updated.updated_at) == (1000, 1000, 1005)
    (change,) = await store.changes("z1", after=(await store.changes("z1", after=None))[0].cursor)
    assert change.at == 1005


async def test_lease_is_valid_strictly_before_its_expiry(
    store: SqliteStore, clock: FakeClock
) -> None:
    lease = await store.acquire_lease("l", "a", 10)
    assert lease is not None and lease.expires_at == 1010
    await store.create(new("a"), actor="a", fence=lease.fence)
    clock.now = 1009.999
    assert await store.acquire_lease("l", "b", 10) is None
    await store.create(new("b"), actor="a", fence=lease.fence)
    clock.now = 1010.0  # expired at exactly expires_at
    with pytest.raises(FencedOut):
        await store.create(new("c"), actor="a", fence=lease.fence)
    assert await store.renew_lease(lease, 10) is None
    taken = await store.acquire_lease("l", "b", 10)
    assert taken is not None and taken.token == lease.token + 1
    assert taken.expires_at == 1020


async def test_renewing_before_expiry_moves_it_from_now(
    store: SqliteStore, clock: FakeClock
) -> None:
    lease = await store.acquire_lease("l", "a", 10)
    assert lease is not None
    clock.now = 1008
    renewed = await store.renew_lease(lease, 10)
    assert renewed is not None and renewed.expires_at == 1018
    clock.now = 1015
    assert await store.acquire_lease("l", "b", 10) is None
    await store.create(new("a"), actor="a", fence=renewed.fence)


async def test_expired_claims_are_deleted_and_leases_kept(
    store: SqliteStore, clock: FakeClock
) -> None:
    lease = await store.acquire_lease("l", "a", 10)  # expires too, but stays a lease
    assert lease is not None
    assert await store.claim_once("t/1", 10) and await store.claim_once("t/2", 30)
    clock.now = 1009.999
    assert not await store.claim_once("t/1", 10)  # live until exactly its expiry
    clock.now = 1010.0
    assert await store.claim_once("t/3", 10)  # any claim deletes the expired ones

    def names() -> list[str]:
        with sqlite3.connect(store.path) as conn:
            return [row[0] for row in conn.execute("SELECT name FROM leases ORDER BY name")]

    assert names() == ["l", "once/t/2", "once/t/3"]
    assert await store.claim_once("t/1", 10)  # forgotten, so won again
    clock.now = 2000
    assert await store.claim_once("t/4", 10)
    assert names() == ["l", "once/t/4"]
    assert await store.get_lease("l") == lease


@pytest.mark.parametrize("ttl", [0, -1.0])
async def test_lease_ttl_must_be_positive(store: SqliteStore, ttl: float) -> None:
    with pytest.raises(ValueError):
        await store.acquire_lease("l", "a", ttl)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: new("a", desired="stop"), ValueError),
        (lambda: new(""), ValueError),
        (lambda: NewRecord(Key("", "z", "w", "a"), {}, "o"), ValueError),
        (lambda: NewRecord(Key("A", "z", "w", "a"), ["not a dict"], "o"), ValueError),  # type: ignore[arg-type]
        (lambda: new("a", observed="up"), ValueError),
    ],
)
async def test_malformed_records_are_refused_before_any_write(
    store: SqliteStore, make: Callable[[], NewRecord], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await store.create(make(), actor="x")
    assert await store.head("z1") == "0"


async def test_malformed_patch_is_refused(store: SqliteStore) -> None:
    created = await store.create(new("a"), actor="x")
    with pytest.raises(ValueError):
        await store.update(created.key, Patch(desired="nope"), expected_version=1, actor="x")  # type: ignore[arg-type]
    assert (await store.get(created.key)).version == 1


async def test_cursor_beyond_the_feed_end_means_the_feed_was_reset(store: SqliteStore) -> None:
    await store.create(new("a"), actor="x")
    assert await store.changes("z1", after="1") == []
    with pytest.raises(CursorExpired, match="beyond"):
        await store.changes("z1", after="2")


async def test_feed_is_trimmed_in_batches_above_the_retention(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "t.sqlite3", feed_retention=1000)
    await s.init()
    for i in range(1015):
        zone = "z1" if i % 2 else "z2"
        await s.create(NewRecord(Key("A", zone, "", f"r{i}"), {}, "o"), actor="x")
    await s.close()
    raw = sqlite3.connect(tmp_path / "t.sqlite3")
    kept, oldest = raw.execute("SELECT count(*), min(seq) FROM feed").fetchone()
    trimmed = dict(raw.execute("SELECT zone, upto FROM feed_trimmed").fetchall())
    raw.close()
    assert 1000 <= kept < 1010  # trimmed every 10 writes
    # Write i got seq i + 1: even seqs went to z1, odd ones to z2. Each zone remembers
    # its newest trimmed seq.
    last_trimmed = oldest - 1

    def newest_trimmed(parity: int) -> int:
        return last_trimmed if last_trimmed % 2 == parity else last_trimmed - 1

    assert trimmed == {"z1": newest_trimmed(0), "z2": newest_trimmed(1)}


async def test_many_waiters_share_one_watcher_and_all_see_another_writer(
    tmp_path: Path,
) -> None:
    # Two stores on one file stand in for two processes: no in-process wake-up between them.
    waiting_store = SqliteStore(tmp_path / "t.sqlite3", poll_interval=0.01)
    writer = SqliteStore(tmp_path / "t.sqlite3")
    await waiting_store.init()
    head = await waiting_store.head("z1")
    waiters = [
        asyncio.create_task(waiting_store.wait_changes("z1", after=head, max_wait=30))
        for _ in range(50)
    ]
    await until(lambda: len(waiting_store._waiters) == 50)  # all probed and parked
    assert waiting_store._watcher is not None
    await writer.create(new("a"), actor="x")
    results = await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert all([c.key.name for c in changes] == ["a"] for changes in results)
    await writer.close()
    await waiting_store.close()


async def test_a_write_wakes_only_the_waiters_of_its_zone(tmp_path: Path) -> None:
    # A slow watcher, so only the store's own wake-up after a write could wake anyone.
    store = SqliteStore(tmp_path / "t.sqlite3", poll_interval=60)
    await store.init()
    head = await store.head("z1")
    waiting = asyncio.create_task(store.wait_changes("z1", after=head, max_wait=30))
    await until(lambda: len(store._waiters) == 1)
    (parked,) = store._waiters
    other_zone = NewRecord(key=Key("Container", "z2", "w1", "b"), spec={"image": "x"}, owner="o")
    await store.create(other_zone, actor="x")
    for _ in range(20):  # let any wake-up scheduled by the write run
        await asyncio.sleep(0)
    assert not parked.done() and list(store._waiters) == [parked]
    await store.create(new("a"), actor="x")
    changes = await asyncio.wait_for(waiting, 5)
    assert [c.key.name for c in changes] == ["a"]
    await store.close()


async def test_the_watcher_wakes_only_the_waiters_of_a_zone_another_process_wrote(
    tmp_path: Path,
) -> None:
    waiting_store = SqliteStore(tmp_path / "t.sqlite3", poll_interval=0.01)
    writer = SqliteStore(tmp_path / "t.sqlite3")
    await waiting_store.init()
    head = await waiting_store.head("z1")
    waiting = asyncio.create_task(waiting_store.wait_changes("z1", after=head, max_wait=30))
    await until(lambda: len(waiting_store._waiters) == 1)
    (parked,) = waiting_store._waiters
    other_zone = NewRecord(key=Key("Container", "z2", "w1", "b"), spec={"image": "x"}, owner="o")
    await writer.create(other_zone, actor="x")
    # The watcher probes every 10 ms: after 20 of its probes the waiter still sleeps.
    probes = 0
    read = waiting_store._read

    async def counted(fn: Any, **kw: Any) -> Any:
        nonlocal probes
        probes += 1
        return await read(fn, **kw)

    waiting_store._read = counted  # type: ignore[method-assign]
    await until(lambda: probes >= 20)
    assert not parked.done() and list(waiting_store._waiters) == [parked]
    await writer.create(new("a"), actor="x")
    changes = await asyncio.wait_for(waiting, 5)
    assert [c.key.name for c in changes] == ["a"]
    await writer.close()
    await waiting_store.close()


def query_plans(db: Path, read: Callable[[sqlite3.Connection], object]) -> list[str]:
    """EXPLAIN QUERY PLAN of every statement `read` runs, one text per statement."""
    conn = sqlite3.connect(db)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    read(conn)
    conn.set_trace_callback(None)
    plans = []
    for sql in statements:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
        plans.append(" | ".join(str(row[-1]) for row in rows))
    conn.close()
    return plans


HOT_PATHS: dict[str, tuple[Callable[[sqlite3.Connection], object], str]] = {
    "get": (
        lambda c: backend._rx_get(c, Key("Container", "z1", "w1", "a")),
        "sqlite_autoindex_records_1",
    ),
    "list zone": (
        lambda c: backend._rx_list(c, "Workload", {"zone": "z1"}, -1),
        "sqlite_autoindex_records_1",
    ),
    "list workspace": (
        lambda c: backend._rx_list(c, "Workload", {"zone": "z1", "workspace": "w1"}, -1),
        "sqlite_autoindex_records_1",
    ),
    "containers by node": (
        lambda c: backend._rx_list(c, "Container", {"zone": "z1", "node": "n1"}, -1),
        "records_by_node",
    ),
    "containers by workload": (
        lambda c: backend._rx_list(
            c, "Container", {"zone": "z1", "workspace": "w1", "parent": "job"}, -1
        ),
        "records_by_parent",
    ),
    "pending": (lambda c: backend._rx_pending(c, "z1", 100), "records_pending"),
    "changes": (lambda c: backend._rx_changes(c, "z1", None, 100), "feed_by_zone"),
    "zone events": (lambda c: backend._rx_zone_events(c, "z1", 0.0, 100), "events_by_zone"),
}


@pytest.mark.parametrize("path", sorted(HOT_PATHS))
async def test_hot_paths_use_their_index_without_scan_or_sort(
    store: SqliteStore, path: str
) -> None:
    read, index = HOT_PATHS[path]
    (plan,) = query_plans(store.path, read)
    assert f"INDEX {index}" in plan, plan
    assert "SCAN" not in plan, plan
    assert "TEMP B-TREE" not in plan, plan


async def test_events_of_a_resource_use_the_uid_index(store: SqliteStore) -> None:
    (plan,) = query_plans(store.path, lambda c: backend._rx_events(c, new("a").key, 50))
    assert "INDEX events_by_uid" in plan and "TEMP B-TREE" not in plan, plan


async def test_fence_on_an_unknown_lease_is_refused(store: SqliteStore) -> None:
    with pytest.raises(FencedOut):
        await store.create(new("a"), actor="x", fence=Fence("nobody", 1))


async def test_spec_versions_use_their_unique_index(store: SqliteStore) -> None:
    (plan,) = query_plans(store.path, lambda c: backend._rx_spec_versions(c, new("a").key))
    assert "sqlite_autoindex_spec_versions_1" in plan and "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize("cursor", ["-1", "", "1.5", " 1", "²"])
async def test_cursors_are_plain_decimal_seqs(store: SqliteStore, cursor: str) -> None:
    with pytest.raises(CursorExpired):
        await store.changes("z1", after=cursor)


async def test_generation_changes_with_every_commit_of_anyone(
    tmp_path: Path, store: SqliteStore
) -> None:
    first = store.generation()
    assert first is not None
    assert store.generation() == first  # nothing committed: the same number
    await store.create(new("g1"), actor="t")
    after_own = store.generation()
    assert after_own is not None and after_own != first
    # Another store on the file (as another process would be).
    other = SqliteStore(tmp_path / "t.sqlite3")
    try:
        await other.create(new("g2"), actor="t")
    finally:
        await other.close()
    after_other = store.generation()
    assert after_other not in (None, after_own)
    # A write refused before any commit (a version conflict) changes nothing.
    record = await store.get(new("g1").key)
    with pytest.raises(StoreError):
        await store.update(record.key, Patch(desired="drain"), expected_version=99, actor="t")
    assert store.generation() == after_other
    await store.close()
    assert store.generation() is None


async def test_generation_reads_the_wal_index_and_sees_other_processes_commits(
    tmp_path: Path, store: SqliteStore
) -> None:
    first = store.generation()
    index = store._wal_index
    assert index is not None and index.path == Path(f"{store.path}-shm")
    assert store.generation() == first == index.header()
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute(\"INSERT INTO leases VALUES ('from-child', 'x', 1, 0)\"); c.commit()"
    )
    argv = [sys.executable, "-c", script, str(store.path)]
    await asyncio.to_thread(subprocess.run, argv, check=True, timeout=30)
    second = store.generation()
    assert second not in (None, first)
    assert store._wal_index is index  # still read from the header
    assert store.generation() == second


async def test_a_wal_index_that_is_not_the_live_one_is_dropped_within_a_check(
    tmp_path: Path, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.generation()
    live = store._wal_index
    assert live is not None
    stale_file = tmp_path / "stale-shm"
    # Copied through the index's own descriptor: opening and closing the live file
    # here would drop this process's SQLite locks on it (see `_ShmFiles`).
    await asyncio.to_thread(stale_file.write_bytes, os.pread(live.fd, 1 << 16, 0))
    stale = backend.WalIndex.open(stale_file)
    assert stale is not None and stale.header() is not None
    store._wal_index = stale  # as if SQLite kept its live index somewhere else
    stale.verify_at = 0.0
    assert store.generation() is not None  # the first check records
    await store.create(new("w1"), actor="t")
    stale.verify_at = 0.0
    assert store.generation() is None  # the pragma moved, the header did not
    assert not store._wal_index_live
    assert "event=wal_index_unreliable" in caplog.text
    before = store.generation()
    await store.create(new("w2"), actor="t")
    assert store.generation() not in (None, before)  # the pragma from now on
    await store.close()
    live.release()


async def test_the_shm_descriptor_outlives_every_store_of_the_process_on_the_file(
    tmp_path: Path, store: SqliteStore
) -> None:
    """POSIX locks belong to the process: closing any descriptor of the -shm file
    drops SQLite's lock there too, and another process may then rebuild the index
    under open connections. A second store closing must not do that to the first."""
    other = SqliteStore(store.path)
    store.generation()
    other.generation()
    index = store._wal_index
    assert index is not None and other._wal_index is not None
    assert other._wal_index.fd == index.fd  # one descriptor, shared
    inode = os.fstat(index.fd).st_ino

    def locked() -> bool:
        with open("/proc/locks", encoding="ascii") as f:
            return any(
                line.split()[4] == str(os.getpid()) and line.split()[5].endswith(f":{inode}")
                for line in f
                if len(line.split()) > 5
            )

    assert locked()
    await other.close()
    assert locked()  # the first store's SQLite still holds its lock
    assert store.generation() is not None
    await store.create(new("after"), actor="t")
    assert os.fstat(index.fd).st_ino == inode


def test_wal_index_verify_flags_only_a_header_that_missed_a_commit() -> None:
    index = backend.WalIndex.__new__(backend.WalIndex)
    index._checked = None
    assert index.verify(10, 1, 10)  # first check: recorded
    assert index.verify(10, 1, 10)  # nothing committed: nothing moved
    assert index.verify(11, 2, 11)  # a commit: both moved
    # A commit between the header read and the pragma last time: this pragma
    # counts none that the header missed.
    assert index.verify(12, 2, 12)
    assert index.verify(12, 3, 13)  # a commit between this pragma and `after`
    assert not index.verify(13, 4, 12)  # the pragma moved; `after` = last `before`


@pytest.mark.parametrize(
    "header",
    [
        b"",  # too short
        (3007000).to_bytes(4, sys.byteorder) + bytes(44) + bytes(48),  # not initialised
        (1).to_bytes(4, sys.byteorder) + bytes(8) + b"\x01" + bytes(35) + bytes(48),
    ],
)
def test_an_unreadable_wal_index_is_not_used(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "x-shm"
    path.write_bytes(header)
    index = backend.WalIndex.open(path)
    assert index is not None and index.header() is None
    index.release()
    assert backend.WalIndex.open(tmp_path / "missing-shm") is None


def test_a_wal_index_between_its_two_copies_reads_as_unknown(tmp_path: Path) -> None:
    copy = (3007000).to_bytes(4, sys.byteorder) + bytes(8) + b"\x01" + bytes(35)
    path = tmp_path / "x-shm"
    path.write_bytes(copy + copy)
    index = backend.WalIndex.open(path)
    assert index is not None and index.header() is not None
    with path.open("r+b") as f:  # a writer has written the second copy only
        f.seek(48 + 8)
        f.write(b"\x02")
    assert index.header() is None
    index.release()


async def test_replicas_sharing_one_spec_dict_each_store_their_spec(
    tmp_path: Path, store: SqliteStore
) -> None:
    # A batch encodes a spec dict shared by several creates once (a gang's replicas);
    # every record, and its spec version 1, still holds its own spec as given.
    shared = {"image": "train", "replica": {"count": 3}}
    specs = {"t.1": shared, "t.2": shared, "t.3": shared, "s.1": {"image": "serve"}}
    specs["s.2"] = dict(specs["s.1"], image="serve:2")  # equal shape, other dict
    keys = {name: Key("Container", "z1", "w1", name) for name in specs}
    writes = [
        Write(key=keys[name], new=NewRecord(key=keys[name], spec=spec, owner="o"))
        for name, spec in specs.items()
    ]
    await store.batch(writes, actor="test", fence=None)
    assert {name: (await store.get(key)).spec for name, key in keys.items()} == specs
    conn = sqlite3.connect(tmp_path / "t.sqlite3")
    try:
        stored = conn.execute(
            "SELECT r.name, v.spec FROM records r JOIN spec_versions v ON v.uid = r.uid"
        ).fetchall()
    finally:
        conn.close()
    assert {name: json.loads(text) for name, text in stored} == specs
