"""History: spec versions and events, bounded per resource and deleted with it."""

from __future__ import annotations

import time

import pytest

from dora.store import EVENT_LIMIT, HISTORY_LIMIT, Event, NotFound, Patch, Store, Write
from tests.conformance.helpers import key, new


async def test_spec_versions_are_bounded_and_oldest_first(store: Store) -> None:
    k = key("web")
    record = await store.create(new(k, image="v0"), actor="alice")
    changes = HISTORY_LIMIT + 5
    for i in range(1, changes + 1):
        record = await store.update(
            k, Patch(spec={"image": f"v{i}", "replica": 1}), expected_version=i, actor="alice"
        )
    versions = await store.spec_versions(k)
    assert [v.number for v in versions] == list(range(changes + 2 - HISTORY_LIMIT, changes + 2))
    assert versions[-1].spec == record.spec
    assert versions[-1].spec_hash == record.spec_hash
    assert versions[0].spec["image"] == f"v{changes + 1 - HISTORY_LIMIT}"


async def test_events_are_bounded_and_ordered(store: Store) -> None:
    k = key("web")
    await store.create(new(k), actor="alice")
    t0 = time.time()
    total = EVENT_LIMIT + 10
    for i in range(total):
        await store.add_event(Event(k, "Tick", f"m{i}", "scheduler", t0 + i))
    kept = await store.events(k, limit=EVENT_LIMIT * 2)
    assert [e.message for e in kept] == [f"m{i}" for i in range(10, total)]
    latest = await store.events(k)  # default limit 50: the newest, oldest first
    assert [e.message for e in latest] == [f"m{i}" for i in range(total - 50, total)]
    assert all(e.key == k and e.actor == "scheduler" and e.reason == "Tick" for e in latest)


async def test_events_with_equal_times_keep_insertion_order(store: Store) -> None:
    k = key("web")
    await store.create(new(k), actor="alice")
    at = time.time()
    for reason in ("Created", "Queued", "Placed"):
        await store.add_event(Event(k, reason, "", "scheduler", at))
    assert [e.reason for e in await store.events(k)] == ["Created", "Queued", "Placed"]
    assert [e.reason for e in await store.events(k, limit=2)] == ["Queued", "Placed"]


async def test_zone_events_filter_by_zone_and_time(store: Store) -> None:
    a, b, other = key("a"), key("b", workspace="w2"), key("c", zone="z2")
    for k in (a, b, other):
        await store.create(new(k), actor="alice")
    t0 = 1_000_000.0
    await store.add_event(Event(a, "Old", "", "api", t0))
    await store.add_event(Event(b, "Placed", "", "scheduler", t0 + 2))
    await store.add_event(Event(other, "Elsewhere", "", "api", t0 + 3))
    await store.add_event(Event(a, "Running", "", "node:n1", t0 + 4))
    await store.add_event(Event(a, "Exited", "", "node:n1", t0 + 5))

    recent = await store.zone_events("z1", since=t0 + 1)
    assert [(e.key, e.reason) for e in recent] == [(b, "Placed"), (a, "Running"), (a, "Exited")]
    assert [e.reason for e in await store.zone_events("z1", since=t0 + 2, limit=2)] == [
        "Running",
        "Exited",
    ]
    assert (await store.zone_events("z1"))[0].reason == "Old"
    assert [e.reason for e in await store.zone_events("z2")] == ["Elsewhere"]
    assert await store.zone_events("z9") == []


async def test_add_event_without_a_record_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.add_event(Event(key("ghost"), "Created", "", "api", time.time()))
    assert await store.events(key("ghost")) == []
    assert await store.spec_versions(key("ghost")) == []


async def test_delete_removes_history_and_a_recreate_starts_fresh(store: Store) -> None:
    k = key("web")
    await store.create(new(k, image="one"), actor="alice")
    await store.update(k, Patch(spec={"image": "two"}), expected_version=1, actor="alice")
    await store.add_event(Event(k, "Placed", "on n1", "scheduler", time.time()))
    assert len(await store.spec_versions(k)) == 2

    await store.delete(k, actor="alice")
    assert await store.spec_versions(k) == []
    assert await store.events(k) == []
    assert await store.zone_events("z1") == []

    again = await store.create(new(k, image="three"), actor="bob")
    versions = await store.spec_versions(k)
    assert [(v.number, v.uid, v.actor) for v in versions] == [(1, again.uid, "bob")]
    assert await store.events(k) == []


async def test_batch_events_are_bounded_like_single_ones(store: Store) -> None:
    old, fresh = key("old"), key("fresh")
    await store.create(new(old), actor="alice")
    t0 = time.time()
    for i in range(EVENT_LIMIT):
        await store.add_event(Event(old, "Tick", f"m{i}", "scheduler", t0 + i))
    later = t0 + EVENT_LIMIT
    await store.batch(
        [Write(fresh, new=new(fresh))],
        actor="scheduler",
        fence=None,
        events=[Event(old, "Tick", f"m{EVENT_LIMIT + i}", "scheduler", later + i) for i in range(3)]
        + [Event(fresh, "Tick", f"f{i}", "scheduler", later + i) for i in range(EVENT_LIMIT + 2)],
    )
    kept = await store.events(old, limit=EVENT_LIMIT * 2)
    assert [e.message for e in kept] == [f"m{i}" for i in range(3, EVENT_LIMIT + 3)]
    kept = await store.events(fresh, limit=EVENT_LIMIT * 2)
    assert [e.message for e in kept] == [f"f{i}" for i in range(2, EVENT_LIMIT + 2)]


async def test_spec_versions_of_a_batch_that_creates_then_changes_a_record(store: Store) -> None:
    a, b = key("a"), key("b")
    await store.create(new(b, image="b0"), actor="alice")
    out = await store.batch(
        [
            Write(a, new=new(a, image="a1")),
            Write(a, patch=Patch(spec={"image": "a2", "replica": 1}), expected_version=1),
            Write(b, delete=True),
            Write(b, new=new(b, image="b1")),
        ],
        actor="bob",
        fence=None,
    )
    versions = await store.spec_versions(a)
    assert [(v.number, v.spec["image"], v.actor) for v in versions] == [
        (1, "a1", "bob"),
        (2, "a2", "bob"),
    ]
    record_b = out[3]
    assert record_b is not None
    assert [(v.number, v.uid, v.spec["image"]) for v in await store.spec_versions(b)] == [
        (1, record_b.uid, "b1")
    ]
