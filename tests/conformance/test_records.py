"""Records: create/get, versions and compare-and-set, patches, listing, batches."""

from __future__ import annotations

import random
import time

import pytest

from dora.store import (
    EVENT_LIMIT,
    AlreadyExists,
    Conflict,
    Event,
    Key,
    NewRecord,
    NotFound,
    Patch,
    Record,
    Store,
    Write,
    spec_hash,
)
from tests.conformance.helpers import clock_passes, container, key, new


async def test_create_returns_version_one_and_get_returns_the_same(store: Store) -> None:
    k = key("web")
    created = await store.create(new(k, computed={"node": "n1"}), actor="alice")
    assert created.key == k
    assert created.version == 1
    assert created.uid
    assert created.spec == {"image": "busybox", "replica": 1}
    assert created.meta == {"labels": {"team": "a"}}
    assert created.desired == "run"
    assert created.computed == {"node": "n1"}
    assert created.observed is None
    assert created.owner == "alice"
    assert created.spec_hash == spec_hash(created.spec)
    assert created.created_at == created.updated_at > 0
    assert await store.get(k) == created


async def test_json_parts_round_trip_every_json_value(store: Store) -> None:
    # The encoder has a fast path and a fallback; what is stored reads back the same
    # either way: text beyond ASCII, floats, integers beyond 64 bits, integer keys
    # (as JSON has them, strings).
    k = key("values")
    spec = {
        "image": "busybox",
        "text": 'Zürich ✓ \u2028 "quoted"',
        "floats": [0.1, 1e-07, 1e16, -2.5e-300],
        "ints": [0, -1, 2**63 - 1, -(2**63)],
        "nested": {"a": [True, False, None, {"b": []}]},
    }
    await store.create(NewRecord(key=k, spec=spec, owner="u"), actor="u")
    assert (await store.get(k)).spec == spec
    record = await store.update(
        k, Patch(computed={"big": 2**70, "keys": {1: "one"}}), expected_version=1, actor="u"
    )
    stored = await store.get(k)
    assert stored.computed == {"big": 2**70, "keys": {"1": "one"}}
    assert stored.version == record.version


async def test_non_finite_floats_are_stored_as_null(store: Store) -> None:
    # JSON has no NaN or Infinity: they are stored (and read back) as null, so every
    # stored part stays valid JSON for every client.
    k = key("nan")
    observed = {"utilization": float("nan"), "limit": float("inf"), "ok": 1.5}
    await store.create(NewRecord(key=k, spec={}, owner="u", observed=observed), actor="u")
    assert (await store.get(k)).observed == {"utilization": None, "limit": None, "ok": 1.5}


async def test_global_and_unscoped_keys_round_trip(store: Store) -> None:
    for k in (Key("Zone", "", "", "z1"), Key("Node", "z1", "", "gpu-1")):
        await store.create(new(k), actor="admin")
        assert (await store.get(k)).key == k


async def test_create_on_a_taken_key_raises_and_keeps_the_first(store: Store) -> None:
    k = key("web")
    first = await store.create(new(k, image="one"), actor="alice")
    with pytest.raises(AlreadyExists):
        await store.create(new(k, image="two"), actor="bob")
    assert await store.get(k) == first


async def test_missing_records_raise_not_found(store: Store) -> None:
    k = key("ghost")
    with pytest.raises(NotFound):
        await store.get(k)
    with pytest.raises(NotFound):
        await store.update(k, Patch(desired="drain"), expected_version=1, actor="a")
    with pytest.raises(NotFound):
        await store.delete(k, actor="a")


async def test_every_write_increments_the_version_by_one(store: Store) -> None:
    k = key("web")
    record = await store.create(new(k), actor="alice")
    for expected in range(2, 7):
        updated = await store.update(
            k, Patch(observed={"tick": expected}), expected_version=record.version, actor="node"
        )
        assert updated.version == expected
        assert updated.created_at == record.created_at
        assert updated.updated_at >= record.updated_at
        record = updated
    assert (await store.get(k)).version == 6


async def test_stale_version_raises_conflict_and_writes_nothing(store: Store) -> None:
    k = key("web")
    await store.create(new(k), actor="alice")
    current = await store.update(k, Patch(desired="pause"), expected_version=1, actor="api")
    head = await store.head("z1")
    with pytest.raises(Conflict) as raised:
        await store.update(k, Patch(desired="drain"), expected_version=1, actor="api")
    assert (raised.value.key, raised.value.expected, raised.value.actual) == (k, 1, 2)
    assert await store.get(k) == current
    assert await store.head("z1") == head  # no change was appended


async def test_patch_keeps_unset_parts_and_none_clears(store: Store) -> None:
    k = key("web")
    await store.create(
        new(k, computed={"node": "n1"}, observed={"state": "running"}), actor="alice"
    )
    r = await store.update(k, Patch(desired="drain"), expected_version=1, actor="api")
    assert (r.desired, r.computed, r.observed) == ("drain", {"node": "n1"}, {"state": "running"})
    assert r.spec == {"image": "busybox", "replica": 1}
    r = await store.update(k, Patch(computed=None), expected_version=2, actor="scheduler")
    assert (r.computed, r.observed) == (None, {"state": "running"})
    r = await store.update(
        k, Patch(node="n2", parent="job", meta={"x": 1}), expected_version=3, actor="s"
    )
    assert (r.node, r.parent, r.meta, r.desired) == ("n2", "job", {"x": 1}, "drain")
    r = await store.update(k, Patch(observed=None), expected_version=4, actor="node")
    assert r.observed is None
    assert await store.get(k) == r


async def test_scaling_keeps_the_spec_hash_and_adds_no_spec_version(store: Store) -> None:
    k = key("web")
    created = await store.create(new(k, replica=1), actor="alice")
    scaled = await store.update(
        k, Patch(spec={"image": "busybox", "replica": 5}), expected_version=1, actor="alice"
    )
    assert scaled.spec["replica"] == 5
    assert scaled.spec_hash == created.spec_hash
    assert [v.number for v in await store.spec_versions(k)] == [1]

    changed = await store.update(
        k, Patch(spec={"image": "debian", "replica": 5}), expected_version=2, actor="bob"
    )
    assert changed.spec_hash != created.spec_hash
    versions = await store.spec_versions(k)
    assert [(v.number, v.spec_hash, v.actor) for v in versions] == [
        (1, created.spec_hash, "alice"),
        (2, changed.spec_hash, "bob"),
    ]
    assert versions[1].spec == {"image": "debian", "replica": 5}
    assert {v.uid for v in versions} == {created.uid}
    assert all(v.key == k for v in versions)


async def test_delete_checks_the_version_when_given(store: Store) -> None:
    k = key("web")
    await store.create(new(k), actor="alice")
    await store.update(k, Patch(desired="drain"), expected_version=1, actor="api")
    with pytest.raises(Conflict):
        await store.delete(k, expected_version=1, actor="api")
    assert (await store.get(k)).version == 2
    await store.delete(k, expected_version=2, actor="api")
    with pytest.raises(NotFound):
        await store.get(k)
    assert await store.list_records("Workload") == []


async def test_delete_without_version_is_unconditional(store: Store) -> None:
    k = key("web")
    await store.create(new(k), actor="alice")
    await store.delete(k, actor="api")
    with pytest.raises(NotFound):
        await store.get(k)


async def test_recreated_record_gets_a_new_uid_and_starts_at_version_one(store: Store) -> None:
    k = key("web")
    first = await store.create(new(k), actor="alice")
    await store.update(k, Patch(desired="drain"), expected_version=1, actor="api")
    await store.delete(k, actor="api")
    second = await store.create(new(k), actor="alice")
    assert second.uid != first.uid
    assert second.version == 1


async def test_get_many_keeps_the_given_order_and_skips_missing(store: Store) -> None:
    keys = [key(name) for name in ("a", "b", "c")]
    for k in keys:
        await store.create(new(k), actor="alice")
    asked = [keys[2], key("missing"), keys[0], keys[1]]
    assert [r.key for r in await store.get_many(asked)] == [keys[2], keys[0], keys[1]]
    assert await store.get_many([]) == []


# --------------------------------------------------------------------------- listing


async def test_list_by_every_scope_combination_is_ordered_by_key(store: Store) -> None:
    workloads = [
        key("b", zone="z1", workspace="w1"),
        key("a", zone="z1", workspace="w1"),
        key("c", zone="z1", workspace="w2"),
        key("d", zone="z2", workspace="w1"),
        key("A", zone="z2", workspace="w2"),
    ]
    others = [Key("Zone", "", "", "z1"), Key("Zone", "", "", "z2"), Key("Volume", "z1", "w1", "a")]
    everything = workloads + others
    random.Random(7).shuffle(everything)
    for k in everything:
        await store.create(new(k), actor="admin")

    async def listed(zone: str | None = None, workspace: str | None = None) -> list[Key]:
        records = await store.list_records("Workload", zone=zone, workspace=workspace)
        return [r.key for r in records]

    assert await listed() == sorted(workloads)
    assert await listed(zone=None, workspace=None) == sorted(workloads)
    assert await listed(zone="z1") == sorted(k for k in workloads if k.zone == "z1")
    assert await listed(zone="z1", workspace="w1") == [key("a"), key("b")]
    assert await listed(workspace="w1") == sorted(k for k in workloads if k.workspace == "w1")
    assert await listed(zone="z3") == []
    assert [r.key for r in await store.list_records("Workload", limit=2)] == sorted(workloads)[:2]
    zones = await store.list_records("Zone", zone="")
    assert [r.key.name for r in zones] == ["z1", "z2"]
    assert [r.key for r in await store.list_records("Volume")] == [Key("Volume", "z1", "w1", "a")]
    assert await store.list_records("Nothing") == []


async def test_containers_by_node_and_by_parent(store: Store) -> None:
    placements = {
        "job.1": ("n1", "job"),
        "job.2": ("n2", "job"),
        "job.3": ("n1", "job"),
        "other.1": ("n1", "other"),
        "loose.1": ("", ""),
    }
    for name, (node, parent) in placements.items():
        await store.create(new(container(name), node=node, parent=parent), actor="s")
    await store.create(new(container("job.9", zone="z2"), node="n1", parent="job"), actor="s")
    await store.create(new(container("x.1", workspace="w2"), node="n1", parent="job"), actor="s")

    on_n1 = await store.list_records("Container", zone="z1", node="n1")
    assert [r.key for r in on_n1] == [
        container("job.1"),
        container("job.3"),
        container("other.1"),
        container("x.1", workspace="w2"),
    ]
    of_job = await store.list_records("Container", zone="z1", workspace="w1", parent="job")
    assert [r.key.name for r in of_job] == ["job.1", "job.2", "job.3"]
    on_n1_of_job = await store.list_records(
        "Container", zone="z1", workspace="w1", node="n1", parent="job"
    )
    assert [r.key.name for r in on_n1_of_job] == ["job.1", "job.3"]
    assert [r.key.name for r in await store.list_records("Container", node="n1", limit=1)] == [
        "job.1"
    ]

    # Moving a container moves it between the node lists.
    moved = await store.update(container("job.1"), Patch(node="n2"), expected_version=1, actor="s")
    assert moved.node == "n2"
    on_n2 = await store.list_records("Container", zone="z1", node="n2")
    assert [r.key.name for r in on_n2] == ["job.1", "job.2"]


async def test_pending_is_unplaced_runnable_containers_oldest_first(store: Store) -> None:
    # Created in an order that differs from key order, so ordering by age shows.
    last = 0.0
    for name in ("c3", "c1", "c2"):
        await clock_passes(last + 0.002)
        last = (await store.create(new(container(name)), actor="api")).created_at
    await store.create(new(container("placed"), node="n1"), actor="api")
    await store.create(new(container("drained"), desired="drain"), actor="api")
    await store.create(new(container("paused"), desired="pause"), actor="api")
    await store.create(new(container("elsewhere", zone="z2")), actor="api")
    await store.create(new(key("workload")), actor="api")  # node "" but not a Container

    assert [r.key.name for r in await store.pending("z1")] == ["c3", "c1", "c2"]
    assert [r.key.name for r in await store.pending("z1", limit=2)] == ["c3", "c1"]
    assert [r.key.name for r in await store.pending("z2")] == ["elsewhere"]
    assert await store.pending("z9") == []

    await store.update(container("c1"), Patch(node="n1"), expected_version=1, actor="s")
    await store.update(container("c2"), Patch(desired="drain"), expected_version=1, actor="api")
    await store.update(container("drained"), Patch(desired="run"), expected_version=1, actor="a")
    assert [r.key.name for r in await store.pending("z1")] == ["c3", "drained"]
    await store.delete(container("c3"), actor="api")
    assert [r.key.name for r in await store.pending("z1")] == ["drained"]


# --------------------------------------------------------------------------- batch


async def test_batch_applies_every_write(store: Store) -> None:
    await store.create(new(key("old")), actor="alice")
    before = await store.head("z1")
    await store.batch(
        [
            Write(key("a"), new=new(key("a"))),
            Write(key("old"), patch=Patch(desired="drain"), expected_version=1),
            Write(key("a"), patch=Patch(computed={"n": 1}), expected_version=1),
        ],
        actor="api",
        fence=None,
    )
    assert (await store.get(key("a"))).version == 2
    assert (await store.get(key("a"))).computed == {"n": 1}
    assert (await store.get(key("old"))).desired == "drain"
    changes = await store.changes("z1", after=before)
    assert [(c.op, c.key.name, c.version) for c in changes] == [
        ("create", "a", 1),
        ("update", "old", 2),
        ("update", "a", 2),
    ]


@pytest.mark.parametrize("failure", ["conflict", "exists", "missing"])
async def test_batch_is_all_or_nothing(store: Store, failure: str) -> None:
    await store.create(new(key("old")), actor="alice")
    await store.update(key("old"), Patch(desired="pause"), expected_version=1, actor="a")
    before_old = await store.get(key("old"))
    head = await store.head("z1")
    bad = {
        "conflict": Write(key("old"), patch=Patch(desired="drain"), expected_version=1),
        "exists": Write(key("old"), new=new(key("old"))),
        "missing": Write(key("ghost"), patch=Patch(desired="drain"), expected_version=1),
    }[failure]
    writes = [
        Write(key("a"), new=new(key("a"))),
        Write(key("old"), patch=Patch(observed={"x": 1}), expected_version=2),
        bad,
    ]
    with pytest.raises((Conflict, AlreadyExists, NotFound)):
        await store.batch(writes, actor="api", fence=None)
    with pytest.raises(NotFound):
        await store.get(key("a"))
    assert await store.get(key("old")) == before_old
    assert await store.head("z1") == head
    assert await store.changes("z1", after=head) == []


BASE = Record(key("a"), "uid", 1, {}, {}, "run", None, None, "", "x", "", "", 1.0, 1.0)
"""A record of key ``a``, for malformed `Write.base` cases."""


@pytest.mark.parametrize(
    "write",
    [
        Write(key("a")),
        Write(key("a"), patch=Patch(desired="drain")),
        Write(key("a"), new=NewRecord(key("b"), {}, "x")),
        Write(key("a"), new=NewRecord(key("a"), {}, "x"), expected_version=1),
        Write(key("a"), new=NewRecord(key("a"), {}, "x"), delete=True),
        Write(key("a"), patch=Patch(desired="drain"), expected_version=1, delete=True),
        Write(key("a"), new=NewRecord(key("a"), {}, "x"), base=BASE),
        Write(key("a"), delete=True, base=BASE),
        Write(key("b"), patch=Patch(desired="drain"), expected_version=1, base=BASE),
    ],
)
async def test_malformed_batch_raises_value_error_and_writes_nothing(
    store: Store, write: Write
) -> None:
    with pytest.raises(ValueError):
        await store.batch([Write(key("z"), new=new(key("z"))), write], actor="api", fence=None)
    assert await store.list_records("Workload") == []


async def test_an_update_with_its_base_returns_the_record_as_stored(store: Store) -> None:
    k = key("a")
    base = await store.create(new(k, computed={"n": 0}), actor="alice")
    (out,) = await store.batch(
        [Write(k, patch=Patch(computed={"n": 1}), expected_version=1, base=base)],
        actor="scheduler",
        fence=None,
    )
    stored = await store.get(k)
    assert out == stored
    assert (stored.version, stored.computed, stored.spec) == (2, {"n": 1}, base.spec)


async def test_a_stale_base_is_only_a_hint(store: Store) -> None:
    # The base is of a record since deleted and created again: same key, same version,
    # another uid and content. The update is judged by the version alone, as without a
    # base, and returns what is stored, not the stale base patched.
    k = key("a")
    stale = await store.create(new(k, image="one"), actor="alice")
    await store.delete(k, actor="alice")
    again = await store.create(new(k, image="two"), actor="alice")
    (out,) = await store.batch(
        [Write(k, patch=Patch(desired="pause"), expected_version=1, base=stale)],
        actor="scheduler",
        fence=None,
    )
    assert out == await store.get(k)
    assert out is not None and out.uid == again.uid and out.spec["image"] == "two"
    assert out.version == 2 and out.desired == "pause"
    # A base older than the expected version changes nothing either.
    (out,) = await store.batch(
        [Write(k, patch=Patch(computed={"n": 2}), expected_version=2, base=again)],
        actor="scheduler",
        fence=None,
    )
    assert out == await store.get(k)
    assert out is not None and out.desired == "pause" and out.computed == {"n": 2}
    with pytest.raises(Conflict):
        await store.batch(
            [Write(k, patch=Patch(desired="run"), expected_version=2, base=again)],
            actor="scheduler",
            fence=None,
        )


async def test_empty_batch_is_a_no_op(store: Store) -> None:
    head = await store.head("z1")
    await store.batch([], actor="api", fence=None)
    assert await store.head("z1") == head


async def test_batch_deletes_returns_records_and_appends_events(store: Store) -> None:
    await store.create(new(key("old")), actor="alice")
    await store.create(new(key("keep")), actor="alice")
    head = await store.head("z1")
    out = await store.batch(
        [
            Write(key("a"), new=new(key("a"))),
            Write(key("old"), delete=True, expected_version=1),
            Write(key("keep"), patch=Patch(desired="pause"), expected_version=1),
        ],
        actor="scheduler",
        fence=None,
        events=[
            Event(key("a"), "Created", "made in a batch", "scheduler", 1.0),
            Event(key("old"), "Gone", "dropped: the record is deleted", "scheduler", 1.0),
            Event(key("keep"), "Paused", "paused", "scheduler", 2.0),
        ],
    )
    assert [r.key.name if r else None for r in out] == ["a", None, "keep"]
    assert out[2] is not None and out[2].version == 2 and out[2].desired == "pause"
    with pytest.raises(NotFound):
        await store.get(key("old"))
    assert [e.reason for e in await store.events(key("a"))] == ["Created"]
    assert [e.reason for e in await store.events(key("keep"))] == ["Paused"]
    ops = [(c.op, c.key.name) for c in await store.changes("z1", after=head)]
    assert ops == [("create", "a"), ("delete", "old"), ("update", "keep")]


async def test_batch_events_go_to_the_record_the_key_has_after_the_batch(store: Store) -> None:
    # A batch's events are attached once its writes are done: to whichever record then
    # holds the key (one written in the batch or not), never to one it replaced.
    for name in ("swap", "chatty", "other"):
        await store.create(new(key(name)), actor="alice")
    t0 = time.time()
    for i in range(EVENT_LIMIT):
        await store.add_event(Event(key("chatty"), "Tick", f"m{i}", "scheduler", t0 + i))
    before = await store.get(key("swap"))
    out = await store.batch(
        [
            Write(key("swap"), patch=Patch(desired="drain"), expected_version=1),
            Write(key("swap"), delete=True, expected_version=2),
            Write(key("swap"), new=new(key("swap"), image="v2")),
            Write(key("chatty"), patch=Patch(desired="pause"), expected_version=1),
        ],
        actor="scheduler",
        fence=None,
        events=[
            Event(key("swap"), "Recreated", "new copy", "scheduler", t0),
            Event(key("chatty"), "Paused", "paused", "scheduler", t0 + EVENT_LIMIT),
            Event(key("other"), "Seen", "not written in the batch", "scheduler", t0),
        ],
    )
    assert out[2] is not None and out[2].uid != before.uid
    assert [e.reason for e in await store.events(key("swap"))] == ["Recreated"]
    assert [e.reason for e in await store.events(key("other"))] == ["Seen"]
    kept = await store.events(key("chatty"), limit=EVENT_LIMIT * 2)
    assert len(kept) == EVENT_LIMIT  # trimmed though the batch wrote the record
    assert kept[0].message == "m1" and kept[-1].reason == "Paused"
    # An event for a record the batch updated and then deleted goes nowhere.
    await store.batch(
        [
            Write(key("other"), patch=Patch(desired="drain"), expected_version=1),
            Write(key("other"), delete=True, expected_version=2),
        ],
        actor="scheduler",
        fence=None,
        events=[Event(key("other"), "Lost", "its record is gone", "scheduler", t0)],
    )
    reasons = [e.reason for e in await store.zone_events("z1", limit=1000)]
    assert "Lost" not in reasons and "Seen" not in reasons


async def test_batch_delete_with_stale_version_writes_nothing(store: Store) -> None:
    await store.create(new(key("old")), actor="alice")
    await store.update(key("old"), Patch(desired="drain"), expected_version=1, actor="a")
    with pytest.raises(Conflict):
        await store.batch(
            [
                Write(key("b"), new=new(key("b"))),
                Write(key("old"), delete=True, expected_version=1),
            ],
            actor="s",
            fence=None,
        )
    assert (await store.get(key("old"))).version == 2
    with pytest.raises(NotFound):
        await store.get(key("b"))
