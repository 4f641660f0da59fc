"""The scheduler and a paused container (the API's ``POST /v1/containers/{n}/pause``
sets its desired to ``pause``; the agent freezes it and reports ``paused``): the
scheduler leaves it placed with its GPUs booked — no drain, release or re-creation —
and the workload's phase counts it apart instead of calling it running."""

from __future__ import annotations

from dora.store import Key, Patch, Record, Store
from tests.integration.test_scheduler_loop import (
    V100,
    WS,
    ZONE,
    Clock,
    add_node,
    add_workload,
    containers,
    leader,
    settle,
    store,
)

__all__ = ["store"]  # the fixture, shared with the loop's tests


async def _set(store: Store, record: Record, **patch: object) -> None:
    await store.update(record.key, Patch(**patch), expected_version=record.version, actor="api")  # type: ignore[arg-type]


async def _workload(store: Store, name: str) -> dict[str, object]:
    return (await store.get(Key("Workload", ZONE, WS, name))).computed or {}


async def test_a_paused_replica_keeps_its_gpus_and_is_counted_apart(store: Store) -> None:
    clock = Clock()
    await add_node(store, "g1", clock.now, gpus=4)
    gpus = {"gpu": {"product_name": V100, "count": 2}}
    await add_workload(store, "train", replica={"count": 2}, selectors=gpus)
    scheduler = await leader(store, clock)
    await settle(scheduler)
    for record in (await containers(store, "train")).values():
        await _set(store, record, observed={"state": "running"})
    await settle(scheduler)
    assert (await _workload(store, "train"))["phase"] == "Running"

    frozen = (await containers(store, "train"))["train.2"]
    await _set(store, frozen, desired="pause")
    frozen = (await containers(store, "train"))["train.2"]
    await _set(store, frozen, observed={"state": "paused"})
    await settle(scheduler)
    after = (await containers(store, "train"))["train.2"]
    assert (after.uid, after.node, after.desired) == (frozen.uid, "g1", "pause")
    assert after.computed["gpus"] == frozen.computed["gpus"]
    assert not after.computed.get("released")
    status = await _workload(store, "train")
    assert (status["phase"], status["message"]) == ("Running", "1/2 replicas running, 1 paused")

    # Its GPUs stay booked: a job that needs them waits.
    await add_workload(store, "next", selectors=gpus)
    await settle(scheduler)
    assert not (await containers(store, "next"))["next.1"].node
    assert (await _workload(store, "next"))["phase"] == "Pending"

    first = (await containers(store, "train"))["train.1"]
    await _set(store, first, desired="pause", observed={"state": "paused"})
    await settle(scheduler)
    status = await _workload(store, "train")
    assert (status["phase"], status["message"]) == ("Paused", "0/2 replicas running, 2 paused")
