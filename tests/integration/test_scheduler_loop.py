"""The scheduler loop over a real SQLite store: simulated nodes (Node records with
reports), real workloads, one pass at a time through `Scheduler.pass_once`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dora.model import parse_document
from dora.scheduler.loop import NotLeader, Scheduler, SchedulerSettings
from dora.store import FencedOut, Key, NewRecord, Patch, Record, Store
from dora.store.sqlite import SqliteStore

ZONE = "z1"
WS = "team"
V100 = "Tesla V100-SXM2-16GB"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = SqliteStore(tmp_path / "db.sqlite3")
    await s.init()
    for kind, name in (("Zone", ZONE), ("Workspace", WS)):
        await s.create(NewRecord(key=Key(kind, "", "", name), spec={}, owner="admin"), actor="t")
    try:
        yield s
    finally:
        await s.close()


def node_report(cpus: int, gpus: int, model: str, now: float) -> dict[str, Any]:
    return {
        "version": "test",
        "cpu_model": "Test CPU",
        "cpu_count": cpus,
        "memory_total": 64 << 30,
        "gpus": [
            {"index": i, "product_name": model, "memory_total_mb": 16384} for i in range(gpus)
        ],
        "last_seen": now,
    }


async def add_node(store: Store, name: str, now: float, *, cpus: int = 8, gpus: int = 0) -> None:
    await store.create(
        NewRecord(
            key=Key("Node", ZONE, "", name),
            spec={"endpoint": "https://127.0.0.1:3001", "allow": ["CPUWorkload", "GPUWorkload"]},
            owner="admin",
            observed=node_report(cpus, gpus, V100, now),
        ),
        actor="t",
    )


async def report(store: Store, name: str, now: float) -> None:
    node = await store.get(Key("Node", ZONE, "", name))
    observed = {**(node.observed or {}), "last_seen": now}
    await store.update(node.key, Patch(observed=observed), expected_version=node.version, actor="t")


def workload_spec(**spec: Any) -> dict[str, Any]:
    doc = {
        "apiVersion": "v1",
        "kind": "Workload",
        "metadata": {"name": "x", "zone": ZONE, "workspace": WS},
        "spec": {"image": {"image": "busybox"}, **spec},
    }
    return parse_document(doc).spec_dict()


async def add_workload(store: Store, name: str, **spec: Any) -> Record:
    return await store.create(
        NewRecord(key=Key("Workload", ZONE, WS, name), spec=workload_spec(**spec), owner="u"),
        actor="u",
    )


async def containers(store: Store, workload: str) -> dict[str, Record]:
    records = await store.list_records("Container", zone=ZONE, workspace=WS, parent=workload)
    return {r.key.name: r for r in records}


async def leader(store: Store, clock: Clock, **settings: Any) -> Scheduler:
    scheduler = Scheduler(store, SchedulerSettings(zone=ZONE, seed=7, **settings), clock=clock)
    scheduler.lease = await store.acquire_lease(scheduler.lease_name, "test", 30)
    assert scheduler.lease is not None
    await scheduler.resync()
    return scheduler


async def settle(scheduler: Scheduler, passes: int = 3) -> None:
    for _ in range(passes):
        await scheduler.pass_once()
        await scheduler.follow_feed(0)


async def test_two_replicas_distribute_land_on_two_nodes(store: Store) -> None:
    clock = Clock()
    await add_node(store, "node1", clock.now)
    await add_node(store, "node2", clock.now)
    await add_workload(
        store,
        "web",
        replica={"count": 2},
        config={"affinity": "Distribute"},
        selectors={"cpu": {"count": 2}},
    )
    scheduler = await leader(store, clock)
    await settle(scheduler)
    placed = await containers(store, "web")
    assert sorted(placed) == ["web.1", "web.2"]
    assert {c.node for c in placed.values()} == {"node1", "node2"}
    for c in placed.values():
        assert len(c.computed["cpus"]) == 2
        assert c.computed["replica"] in (1, 2)
    events = await store.events(placed["web.1"].key)
    assert any(e.reason == "Placed" for e in events)


async def test_gpu_gang_waits_with_reason_until_capacity_frees(store: Store) -> None:
    clock = Clock()
    await add_node(store, "g1", clock.now, gpus=4)
    await add_node(store, "g2", clock.now, gpus=4)
    await add_workload(store, "small", selectors={"gpu": {"product_name": V100, "count": 2}})
    scheduler = await leader(store, clock)
    await settle(scheduler)
    small = (await containers(store, "small"))["small.1"]
    assert len(small.computed["gpus"]) == 2

    await add_workload(
        store,
        "big",
        replica={"count": 2},
        selectors={"gpu": {"product_name": V100, "count": 4}},
    )
    await settle(scheduler)
    big = await containers(store, "big")
    assert all(not c.node for c in big.values()), "a gang is placed whole or not at all"
    workload = await store.get(Key("Workload", ZONE, WS, "big"))
    reason = workload.computed["reason"]
    assert "need 4" in reason and "max free 2" in reason, reason
    assert workload.computed["phase"] == "Pending"

    # The small job ends: the agent reports it exited, its GPUs are released.
    await store.update(
        small.key,
        Patch(observed={"state": "exited", "exit_code": 0}),
        expected_version=small.version,
        actor="node:g1",
    )
    await settle(scheduler)
    big = await containers(store, "big")
    assert {c.node for c in big.values()} == {"g1", "g2"}
    assert all(len(c.computed["gpus"]) == 4 for c in big.values())
    done = await store.get(Key("Workload", ZONE, WS, "small"))
    assert done.computed["phase"] == "Completed"


async def test_product_name_string_filters_models(store: Store) -> None:
    clock = Clock()
    await add_node(store, "g1", clock.now, gpus=2)
    await add_workload(store, "a100", selectors={"gpu": {"product_name": "A100", "count": 1}})
    scheduler = await leader(store, clock)
    await settle(scheduler)
    assert not (await containers(store, "a100"))["a100.1"].node
    workload = await store.get(Key("Workload", ZONE, WS, "a100"))
    assert workload.computed["reason"] == '0/1 nodes fit: 1 without "A100"'


async def test_a_pending_workload_is_not_rewritten_by_passes_that_change_nothing(
    store: Store,
) -> None:
    clock = Clock()
    await add_node(store, "g1", clock.now, gpus=1)
    await add_workload(store, "wide", selectors={"gpu": {"product_name": V100, "count": 2}})
    scheduler = await leader(store, clock)
    await settle(scheduler)
    before = await store.get(Key("Workload", ZONE, WS, "wide"))
    assert before.computed is not None and before.computed["phase"] == "Pending"
    assert before.computed["message"] == "0/1 replicas running"
    assert "need 2" in before.computed["reason"]
    head = await store.head(ZONE)
    # No sweep is due (the clock stands still): these passes reconcile nothing and
    # place nothing, so they must write nothing, not even the same status again.
    await settle(scheduler, passes=4)
    assert await store.get(before.key) == before
    assert await store.changes(ZONE, after=head) == []


async def test_scale_down_drains_highest_index(store: Store) -> None:
    clock = Clock()
    await add_node(store, "node1", clock.now)
    wk = await add_workload(store, "job", replica={"count": 3})
    scheduler = await leader(store, clock)
    await settle(scheduler)
    assert sorted(await containers(store, "job")) == ["job.1", "job.2", "job.3"]
    wk = await store.get(wk.key)
    spec = {**wk.spec, "replica": {"count": 1}}
    await store.update(wk.key, Patch(spec=spec), expected_version=wk.version, actor="u")
    await settle(scheduler)
    after = await containers(store, "job")
    # Placed, so an agent may be starting them: drained (highest first), not deleted.
    assert {n: c.desired for n, c in after.items()} == {
        "job.1": "run",
        "job.2": "drain",
        "job.3": "drain",
    }


async def test_deleted_workload_is_removed_after_its_containers(store: Store) -> None:
    clock = Clock()
    await add_node(store, "node1", clock.now)
    wk = await add_workload(store, "gone", replica={"count": 2})
    scheduler = await leader(store, clock)
    await settle(scheduler)
    c1 = (await containers(store, "gone"))["gone.1"]
    await store.update(
        c1.key, Patch(observed={"state": "running"}), expected_version=c1.version, actor="n"
    )
    wk = await store.get(wk.key)
    await store.update(wk.key, Patch(desired="drain"), expected_version=wk.version, actor="u")
    await settle(scheduler)
    left = await containers(store, "gone")
    assert {n: c.desired for n, c in left.items()} == {"gone.1": "drain", "gone.2": "drain"}
    assert (await store.get(wk.key)).desired == "drain"
    for c in left.values():  # the agent stops them and reports
        await store.update(
            c.key, Patch(observed={"state": "deleted"}), expected_version=c.version, actor="n"
        )
    await settle(scheduler)
    assert await containers(store, "gone") == {}
    assert not [w for w in await store.list_records("Workload", zone=ZONE) if w.key.name == "gone"]


async def test_a_node_that_falls_silent_gets_nothing_though_its_record_is_unchanged(
    store: Store,
) -> None:
    # The scheduler reuses what it derived from an unchanged node record, except
    # readiness, which the clock alone changes.
    clock = Clock()
    await add_node(store, "node1", clock.now)
    await add_node(store, "node2", clock.now)
    await add_workload(store, "first")  # affinity First: node1, by name
    scheduler = await leader(store, clock)
    await settle(scheduler)
    assert (await containers(store, "first"))["first.1"].node == "node1"

    clock.now += 30  # node1 silent past ready_s (20 s); node2 reports
    await report(store, "node2", clock.now)
    await add_workload(store, "second")
    await settle(scheduler)
    assert (await containers(store, "second"))["second.1"].node == "node2"


async def test_lost_node_replicas_are_replaced_elsewhere(store: Store) -> None:
    clock = Clock()
    await add_node(store, "node1", clock.now)
    await add_node(store, "node2", clock.now)
    await add_workload(
        store,
        "svc",
        replica={"count": 2},
        config={"affinity": "Distribute", "restartPolicy": "Always"},
    )
    scheduler = await leader(store, clock, node_lost_grace_s=60)
    await settle(scheduler)
    before = await containers(store, "svc")
    on_node1 = next(n for n, c in before.items() if c.node == "node1")
    for c in before.values():
        await store.update(
            c.key,
            Patch(observed={"state": "running", "started_at": clock.now}),
            expected_version=c.version,
            actor="n",
        )
    clock.now += 85  # node1 silent for ready (20 s) + grace (60 s) and more
    await report(store, "node2", clock.now)
    scheduler.settings = SchedulerSettings(zone=ZONE, seed=7, node_lost_grace_s=60, sweep_s=0.001)
    await settle(scheduler, passes=4)
    after = await containers(store, "svc")
    assert after[on_node1].node == "node2"
    assert after[on_node1].uid != before[on_node1].uid
    assert {c.node for c in after.values()} == {"node2"}


async def test_deposed_scheduler_cannot_write(store: Store) -> None:
    clock = Clock()
    await add_node(store, "node1", clock.now)
    old = Scheduler(store, SchedulerSettings(zone=ZONE, lease_ttl_s=0.2), clock=clock)
    old.lease = await store.acquire_lease(old.lease_name, "old", 0.2)
    assert old.lease is not None
    await old.resync()
    new = Scheduler(store, SchedulerSettings(zone=ZONE), clock=clock)
    deadline = time.monotonic() + 5
    while (lease := await store.acquire_lease(new.lease_name, "new", 30)) is None:
        assert time.monotonic() < deadline
    assert lease.token > old.lease.token
    await add_workload(store, "late")
    await old.follow_feed(0)
    with pytest.raises((FencedOut, NotLeader)):
        await old.pass_once()
        await old.renew()
    assert await containers(store, "late") == {}


async def fail(store: Store, record: Record, at: float) -> None:
    observed = {"state": "failed", "reason": "crash loop: exited 1", "finished_at": at}
    await store.update(
        record.key, Patch(observed=observed), expected_version=record.version, actor="n"
    )


async def test_a_crash_looping_replica_is_recreated_after_a_growing_backoff(
    store: Store,
) -> None:
    clock = Clock()
    await add_node(store, "node1", clock.now, gpus=1)
    await add_workload(
        store, "loop", config={"restartPolicy": "Always"}, selectors={"gpu": {"count": 1}}
    )
    scheduler = await leader(store, clock, sweep_s=0.001)
    await settle(scheduler)
    first = (await containers(store, "loop"))["loop.1"]
    assert first.node == "node1" and first.computed["gpus"] == [0]
    await fail(store, first, clock.now)
    await settle(scheduler)
    held = (await containers(store, "loop"))["loop.1"]
    assert held.uid == first.uid and held.computed.get("released") is True  # GPU freed
    workload = await store.get(Key("Workload", ZONE, WS, "loop"))
    assert "starting again in 10 s" in workload.computed["message"]
    assert any(e.reason == "BackOff" for e in await store.events(workload.key))

    clock.now += 9.5
    await report(store, "node1", clock.now)
    await settle(scheduler)
    assert (await containers(store, "loop"))["loop.1"].uid == first.uid  # still waiting

    clock.now += 1
    await report(store, "node1", clock.now)
    await settle(scheduler)
    second = (await containers(store, "loop"))["loop.1"]
    assert second.uid != first.uid and second.node == "node1"
    assert second.computed["recreations"] == 1 and second.computed["gpus"] == [0]

    await fail(store, second, clock.now)  # fails again: now it waits 20 s
    await settle(scheduler)
    clock.now += 19
    await report(store, "node1", clock.now)
    await settle(scheduler)
    assert (await containers(store, "loop"))["loop.1"].uid == second.uid
    clock.now += 1.5
    await report(store, "node1", clock.now)
    await settle(scheduler)
    third = (await containers(store, "loop"))["loop.1"]
    assert third.uid != second.uid and third.computed["recreations"] == 2


async def test_a_workload_whose_volume_is_gone_waits_with_the_reason(store: Store) -> None:
    """Never placed with an empty folder in place of a deleted Volume or Storage."""
    clock = Clock()
    await add_node(store, "node1", clock.now)
    mounts = [{"name": "data", "target": "/data"}]
    await add_workload(store, "reader", volumes=mounts)
    scheduler = await leader(store, clock)
    await settle(scheduler)
    workload = await store.get(Key("Workload", ZONE, WS, "reader"))
    assert workload.computed["reason"] == f"waits: volume {WS}/data does not exist"
    assert all(not c.node for c in (await containers(store, "reader")).values())

    volume = Key("Volume", ZONE, WS, "data")
    await store.create(NewRecord(key=volume, spec={"storage": "nas"}, owner="admin"), actor="t")
    await settle(scheduler)
    workload = await store.get(workload.key)
    assert workload.computed["reason"] == f"waits: storage nas of volume {WS}/data does not exist"

    storage = {"endpoint": "127.0.0.1", "mountpath": "/exports", "kind": "NFS"}
    await store.create(
        NewRecord(key=Key("Storage", ZONE, "", "nas"), spec=storage, owner="admin"), actor="t"
    )
    await settle(scheduler)
    (placed,) = (await containers(store, "reader")).values()
    assert placed.node == "node1"
    (mount,) = placed.computed["volumes"]
    assert (mount["storage_kind"], mount["path"]) == ("NFS", f"/exports/{WS}/data")
