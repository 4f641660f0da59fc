"""Change feed: order, per-zone isolation, resume, retention, waiting."""

from __future__ import annotations

import asyncio
import time

import pytest

from dora.store import FIELDS, Change, Cursor, CursorExpired, Key, Patch, Store
from tests.conformance.helpers import key, new, wait_until


async def drain(store: Store, zone: str, after: Cursor | None, limit: int = 1000) -> list[Change]:
    """Every change after `after`, read `limit` at a time."""
    out: list[Change] = []
    while batch := await store.changes(zone, after=after, limit=limit):
        out.extend(batch)
        after = batch[-1].cursor
    return out


async def test_every_write_appends_one_change_in_commit_order(store: Store) -> None:
    start = await store.head("z1")
    k = key("web")
    await store.create(new(k), actor="alice")
    await store.update(k, Patch(computed={"n": 1}, desired="drain"), expected_version=1, actor="s")
    await store.update(k, Patch(), expected_version=2, actor="s")
    await store.delete(k, actor="api")

    changes = await store.changes("z1", after=start)
    assert [(c.op, c.key, c.version) for c in changes] == [
        ("create", k, 1),
        ("update", k, 2),
        ("update", k, 3),
        ("delete", k, 3),
    ]
    assert changes[0].parts == FIELDS
    assert changes[1].parts == ("desired", "computed")
    assert changes[2].parts == ()
    assert changes[3].parts == FIELDS
    assert len({c.cursor for c in changes}) == 4
    assert all(c.at > 0 for c in changes)
    assert await store.head("z1") == changes[-1].cursor
    assert await store.changes("z1", after=changes[-1].cursor) == []
    assert await store.changes("z1", after=None) == changes


async def test_feeds_are_per_zone_and_global_kinds_use_the_empty_zone(store: Store) -> None:
    heads = {zone: await store.head(zone) for zone in ("z1", "z2", "")}
    await store.create(new(key("a", zone="z1")), actor="a")
    await store.create(new(Key("Zone", "", "", "z1")), actor="a")
    await store.create(new(key("b", zone="z2")), actor="a")
    await store.create(new(key("c", zone="z1")), actor="a")

    names = {z: [c.key.name for c in await store.changes(z, after=h)] for z, h in heads.items()}
    assert names == {"z1": ["a", "c"], "z2": ["b"], "": ["z1"]}
    empty = await store.head("never-written")
    assert await store.changes("never-written", after=empty) == []
    assert await store.changes("never-written", after=None) == []


async def test_resume_from_a_cursor_loses_and_repeats_nothing(store: Store) -> None:
    cursor = await store.head("z1")
    seen: list[tuple[str, int]] = []
    expected: list[tuple[str, int]] = []
    for round_ in range(4):
        for i in range(5):
            name = f"r{round_}-{i}"
            await store.create(new(key(name)), actor="a")
            expected.append((name, 1))
        # Read a little at a time, resuming from the last cursor each time.
        batch = await store.changes("z1", after=cursor, limit=3)
        seen += [(c.key.name, c.version) for c in batch]
        cursor = batch[-1].cursor
    rest = await drain(store, "z1", cursor, limit=2)
    seen += [(c.key.name, c.version) for c in rest]
    assert seen == expected


async def test_garbage_cursor_raises_cursor_expired(store: Store) -> None:
    await store.create(new(key("a")), actor="a")
    with pytest.raises(CursorExpired):
        await store.changes("z1", after="not a cursor")


async def test_old_cursor_expires_once_its_changes_were_trimmed(tiny_feed_store: Store) -> None:
    store = tiny_feed_store
    start = await store.head("z1")
    count = 0

    async def expired() -> bool:
        nonlocal count
        await store.create(new(key(f"w{count}")), actor="a")
        count += 1
        try:
            await store.changes("z1", after=start)
        except CursorExpired:
            return True
        return False

    await wait_until(expired, within=30, what="the feed to trim past the old cursor")
    # The newest position stays valid, and None reads whatever is still kept, in order.
    head = await store.head("z1")
    assert await store.changes("z1", after=head) == []
    kept = await store.changes("z1", after=None)
    assert kept and kept[-1].cursor == head
    assert [c.key.name for c in kept] == [f"w{i}" for i in range(count - len(kept), count)]
    await store.create(new(key("after")), actor="a")
    assert [c.key.name for c in await store.changes("z1", after=head)] == ["after"]


async def test_a_reader_that_keeps_up_never_expires(tiny_feed_store: Store) -> None:
    store = tiny_feed_store
    cursor = await store.head("z1")
    for i in range(30):
        await store.create(new(key(f"w{i}")), actor="a")
        await store.create(new(key(f"o{i}", zone="z2")), actor="a")
        (change,) = await store.changes("z1", after=cursor)
        assert change.key.name == f"w{i}"
        cursor = change.cursor


async def test_head_of_a_fully_trimmed_zone_is_not_expired(tiny_feed_store: Store) -> None:
    store = tiny_feed_store
    before = await store.head("quiet")
    await store.create(new(key("only", zone="quiet")), actor="a")
    count = 0

    async def quiet_zone_trimmed() -> bool:
        nonlocal count
        await store.create(new(key(f"busy{count}", zone="busy")), actor="a")
        count += 1
        return await store.changes("quiet", after=None) == []

    await wait_until(quiet_zone_trimmed, within=30, what="the quiet zone's only row to go")
    with pytest.raises(CursorExpired):
        await store.changes("quiet", after=before)  # its change was trimmed unseen
    head = await store.head("quiet")
    assert await store.changes("quiet", after=head) == []
    for i in range(10):  # more trimming elsewhere does not expire the quiet zone's head
        await store.create(new(key(f"more{i}", zone="busy")), actor="a")
    assert await store.changes("quiet", after=head) == []
    await store.create(new(key("second", zone="quiet")), actor="a")
    assert [c.key.name for c in await store.changes("quiet", after=head)] == ["second"]


async def test_wait_changes_returns_at_once_when_changes_exist(store: Store) -> None:
    start = await store.head("z1")
    await store.create(new(key("a")), actor="a")
    began = time.monotonic()
    changes = await store.wait_changes("z1", after=start, max_wait=30)
    assert [c.key.name for c in changes] == ["a"]
    assert time.monotonic() - began < 5


async def test_wait_changes_wakes_on_a_write(store: Store) -> None:
    start = await store.head("z1")
    waiting = asyncio.create_task(store.wait_changes("z1", after=start, max_wait=30))
    await store.create(new(key("other-zone", zone="z2")), actor="a")
    await store.create(new(key("a")), actor="a")
    changes = await asyncio.wait_for(waiting, timeout=5)
    assert [c.key.name for c in changes] == ["a"]


async def test_wait_changes_times_out_empty(store: Store) -> None:
    start = await store.head("z1")
    await store.create(new(key("elsewhere", zone="z2")), actor="a")
    began = time.monotonic()
    assert await store.wait_changes("z1", after=start, max_wait=0.2) == []
    elapsed = time.monotonic() - began
    assert 0.15 <= elapsed < 5, elapsed
