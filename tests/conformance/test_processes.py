"""Real child processes sharing one store: no lost update, one lease holder, fast wake-up."""

from __future__ import annotations

import asyncio
import time

from dora.store import Key, Store
from tests.conformance.conftest import Backend
from tests.conformance.helpers import Workers, key, new

N = 200


def as_list(k: Key) -> list[str]:
    return [k.kind, k.zone, k.workspace, k.name]


async def test_two_processes_compare_and_set_one_counter_without_losing_updates(
    backend: Backend,
) -> None:
    store = backend.store
    k = key("counter")
    await store.create(new(k, observed={"n": 0}), actor="test")
    jobs = [{"job": "cas_counter", "key": as_list(k), "n": N, "holder": h} for h in "ab"]
    async with Workers(backend.env, jobs) as workers:
        await workers.go()
        results = await workers.results()
    final = await store.get(k)
    conflicts = [r["conflicts"] for r in results]
    print(f"\n[{backend.name}] 2x{N} CAS increments: conflicts per process {conflicts}")
    assert final.observed == {"n": 2 * N}
    assert final.version == 1 + 2 * N


async def test_two_processes_racing_for_one_lease_never_hold_it_together(
    backend: Backend,
) -> None:
    store = backend.store
    k = key("guarded")
    await store.create(new(k, observed={"n": 0}), actor="test")
    rounds = 15
    jobs = [
        {
            "job": "lease_rounds",
            "key": as_list(k),
            "lease": "scheduler/z1",
            "holder": holder,
            "rounds": rounds,
            "ttl": 30.0,
        }
        for holder in ("a", "b")
    ]
    async with Workers(backend.env, jobs) as workers:
        await workers.go()
        results = await workers.results()
    tokens = [t for r in results for t in r["tokens"]]
    print(
        f"\n[{backend.name}] lease race: refusals {[r['refused'] for r in results]}, "
        f"tokens a={results[0]['tokens']} b={results[1]['tokens']}"
    )
    # Each tenure has its own token, growing within each holder's sequence.
    assert len(tokens) == len(set(tokens)) == 2 * rounds
    assert all(r["tokens"] == sorted(r["tokens"]) for r in results)
    # A fenced CAS under the lease never conflicted: nobody else wrote meanwhile.
    assert [r["conflicts"] for r in results] == [0, 0]
    final = await store.get(k)
    assert final.observed is not None and final.observed["n"] == 2 * rounds
    assert final.observed["token"] == max(tokens)


async def test_processes_claiming_the_same_names_win_each_name_once(backend: Backend) -> None:
    names = [f"token/{i}" for i in range(60)]
    jobs = [{"job": "claims", "names": names, "ttl": 60.0} for _ in range(3)]
    async with Workers(backend.env, jobs) as workers:
        await workers.go()
        results = await workers.results()
    won = [name for r in results for name in r["won"]]
    print(f"\n[{backend.name}] one-shot claims won per process: {[len(r['won']) for r in results]}")
    assert sorted(won) == sorted(names)  # every name won, none twice


async def test_wait_changes_wakes_on_a_write_from_another_process(backend: Backend) -> None:
    store: Store = backend.store
    k = key("from-child", zone="zx")
    start = await store.head("zx")
    job = {"job": "create", "key": as_list(k)}
    async with Workers(backend.env, [job]) as workers:
        waiting = asyncio.create_task(store.wait_changes("zx", after=start, max_wait=30))
        await workers.go()
        changes = await asyncio.wait_for(waiting, timeout=5)
        woke = time.time()
        await workers.results()
    assert [(c.op, c.key) for c in changes] == [("create", k)]
    latency_ms = 1000 * (woke - changes[0].at)
    print(f"\n[{backend.name}] cross-process wake-up latency {latency_ms:.1f} ms")
