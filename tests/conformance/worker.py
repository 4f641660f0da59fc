"""Child process of the multi-process conformance tests: one job against a shared store.

Usage: ``python worker.py JSON`` where JSON holds ``env`` (the `StoreSettings.from_env`
variables that open the store) and ``job`` plus its arguments. Prints ``ready``, waits
for a line on stdin, runs the job, prints one JSON line of results. Imports only dora.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dora.store import Conflict, Key, NewRecord, Patch, Store
from dora.store.config import StoreSettings, open_store

Job = Callable[[Store, dict[str, Any]], Awaitable[dict[str, Any]]]


async def cas_counter(store: Store, job: dict[str, Any]) -> dict[str, Any]:
    """Increment observed.n `n` times by read → +1 → compare-and-set, retrying on Conflict."""
    key = Key(*job["key"])
    conflicts = 0
    for _ in range(job["n"]):
        while True:
            record = await store.get(key)
            count = (record.observed or {})["n"]
            try:
                await store.update(
                    key,
                    Patch(observed={"n": count + 1}),
                    expected_version=record.version,
                    actor=job["holder"],
                )
                break
            except Conflict:
                conflicts += 1
    return {"conflicts": conflicts}


async def lease_rounds(store: Store, job: dict[str, Any]) -> dict[str, Any]:
    """Take the lease `rounds` times; each time, one fenced CAS increment, then release.

    Under mutual exclusion nobody else writes the counter while we hold the lease, so
    a Conflict here would prove two holders at once.
    """
    key = Key(*job["key"])
    tokens: list[int] = []
    conflicts = refused = 0
    while len(tokens) < job["rounds"]:
        lease = await store.acquire_lease(job["lease"], job["holder"], job["ttl"])
        if lease is None:
            refused += 1
            await asyncio.sleep(0.002)  # back off; the other holder is working
            continue
        record = await store.get(key)
        count = (record.observed or {})["n"]
        try:
            await store.update(
                key,
                Patch(observed={"n": count + 1, "token": lease.token}),
                expected_version=record.version,
                actor=job["holder"],
                fence=lease.fence,
            )
        except Conflict:
            conflicts += 1
        tokens.append(lease.token)
        await store.release_lease(lease)
    return {"tokens": tokens, "conflicts": conflicts, "refused": refused}


async def create(store: Store, job: dict[str, Any]) -> dict[str, Any]:
    key = Key(*job["key"])
    record = await store.create(
        NewRecord(key=key, spec={"image": "busybox"}, owner="worker"), actor="worker"
    )
    return {"version": record.version, "done_at": time.time()}


async def claims(store: Store, job: dict[str, Any]) -> dict[str, Any]:
    """Claim each of `names` once (`Store.claim_once`); the names this process won."""
    won = [name for name in job["names"] if await store.claim_once(name, job["ttl"])]
    return {"won": won}


JOBS: dict[str, Job] = {
    "cas_counter": cas_counter,
    "lease_rounds": lease_rounds,
    "create": create,
    "claims": claims,
}


async def main(job: dict[str, Any]) -> None:
    store = await open_store(StoreSettings.from_env(job["env"]))
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        result = await JOBS[job["job"]](store, job)
        print(json.dumps(result), flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
