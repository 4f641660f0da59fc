"""Scheduler throughput: simulated nodes in a real SQLite store, no agents.

For each cluster size N it creates N nodes (8 GPUs each, as reports), M single-GPU
workloads, then lets the real `Scheduler` reconcile (create the containers) and place
them, pass by pass, writing every binding to the store. It prints, per N:

- ``placements_per_s``: containers bound per second of scheduler time, store writes
  included (the end-to-end figure);
- ``pure_per_s``: the same placements by `place_many` alone over the same snapshot
  (the decision cost without I/O), the baseline measured in the same run;
- ``pass_ms_p99``: the 99th percentile of pass durations;
- ``cpu_s`` and ``place/cpu_s``: the process's CPU time over the passes (every
  thread: the pass and the store's writer) and placements per CPU second, a figure
  that other jobs on a shared machine disturb much less than wall time.

Usage: python bench/scheduler.py [--nodes 100,1000,5000] [--gpus-per-node 8]
       [--workloads 10000]. The last line holds the figures for N=1000 (or the middle N).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from dora.model import parse_document
from dora.scheduler import adapter
from dora.scheduler.loop import Scheduler, SchedulerSettings
from dora.scheduler.placement import ClusterState, place_many
from dora.store import Key, NewRecord, Write
from dora.store.sqlite import SqliteStore

ZONE = "bench"
WS = "team"
MODEL = "NVIDIA H200"


def workload_spec() -> dict[str, object]:
    doc = {
        "apiVersion": "v1",
        "kind": "Workload",
        "metadata": {"name": "w", "zone": ZONE, "workspace": WS},
        "spec": {
            "image": {"image": "busybox"},
            "selectors": {"gpu": {"product_name": MODEL, "count": 1}},
            "config": {"affinity": "Fill"},
        },
    }
    return parse_document(doc).spec_dict()


async def populate(store: SqliteStore, nodes: int, gpus: int, workloads: int) -> None:
    now = time.time()
    base = [Key("Zone", "", "", ZONE), Key("Workspace", "", "", WS)]
    await store.batch(
        [Write(key=k, new=NewRecord(key=k, spec={}, owner="bench")) for k in base],
        actor="bench",
        fence=None,
    )
    writes = []
    for i in range(nodes):
        key = Key("Node", ZONE, "", f"node{i:05d}")
        observed = {
            "cpu_model": "EPYC",
            "cpu_count": 16 * gpus,
            "memory_total": 2 << 40,
            "gpus": [
                {"index": g, "product_name": MODEL, "memory_total_mb": 143771} for g in range(gpus)
            ],
            "last_seen": now + 3600,
        }
        spec = {"endpoint": "https://127.0.0.1:3001", "allow": ["GPUWorkload"]}
        writes.append(
            Write(key=key, new=NewRecord(key=key, spec=spec, owner="b", observed=observed))
        )
    spec = workload_spec()
    for i in range(workloads):
        key = Key("Workload", ZONE, WS, f"w{i:06d}")
        writes.append(Write(key=key, new=NewRecord(key=key, spec=spec, owner="b")))
    for start in range(0, len(writes), 2000):
        await store.batch(writes[start : start + 2000], actor="bench", fence=None)


async def run_one(nodes: int, gpus: int, workloads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.sqlite3")
        await store.init()
        try:
            await populate(store, nodes, gpus, workloads)
            scheduler = Scheduler(store, SchedulerSettings(zone=ZONE, seed=1, sweep_s=1e9))
            scheduler.lease = await store.acquire_lease(scheduler.lease_name, "bench", 3600)
            await scheduler.resync()

            # Baseline in the same run: the pure decision for the same queue, no I/O.
            now = time.time()
            views = [adapter.node_view(n, now, 20) for n in scheduler.snapshot.nodes.values()]
            queue = [
                adapter.gang_of(w, (f"{w.key.name}.1",))
                for w in scheduler.snapshot.workloads.values()
            ]
            t0 = time.perf_counter()
            pure = place_many(ClusterState(views), queue, now, random.Random(1))
            pure_s = time.perf_counter() - t0
            pure_placed = sum(len(r.bookings) for r in pure.placed)

            pass_times: list[float] = []
            placed = 0
            cpu0 = time.process_time()
            for _ in range(50):
                stats = await scheduler.pass_once()
                pass_times.append(stats.seconds)
                placed += stats.placed
                await scheduler.follow_feed(0)
                if stats.placed == 0 and stats.actions == 0:
                    break
            cpu_s = time.process_time() - cpu0
            total_s = sum(pass_times)
            bound = len([c for c in scheduler.snapshot.all_containers() if c.node])
            return {
                "nodes": nodes,
                "workloads": workloads,
                "bound": bound,
                "placements_per_s": placed / total_s if total_s else 0.0,
                "pure_per_s": (pure_placed / pure_s) if pure_s else 0.0,
                "pass_ms_p99": 1000 * _p99(pass_times),
                "passes": len(pass_times),
                "total_s": total_s,
                "cpu_s": cpu_s,
                "per_cpu_s": placed / cpu_s if cpu_s else 0.0,
            }
        finally:
            await store.close()


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="100,1000,5000")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--workloads", type=int, default=10_000)
    args = parser.parse_args()
    sizes = [int(n) for n in args.nodes.split(",")]
    results = []
    print(
        f"{'nodes':>6} {'workloads':>9} {'bound':>6} {'place/s':>9} {'pure/s':>9} "
        f"{'pass_p99_ms':>11} {'passes':>6} {'total_s':>8} {'cpu_s':>6} {'place/cpu_s':>11}"
    )
    for n in sizes:
        r = await run_one(n, args.gpus_per_node, args.workloads)
        results.append(r)
        print(
            f"{r['nodes']:>6} {r['workloads']:>9} {r['bound']:>6.0f} "
            f"{r['placements_per_s']:>9.0f} {r['pure_per_s']:>9.0f} {r['pass_ms_p99']:>11.0f} "
            f"{r['passes']:>6.0f} {r['total_s']:>8.2f} {r['cpu_s']:>6.2f} {r['per_cpu_s']:>11.0f}"
        )
    pick = next((r for r in results if r["nodes"] == 1000), results[len(results) // 2])
    ratio = pick["placements_per_s"] / pick["pure_per_s"] if pick["pure_per_s"] else 0.0
    print(
        f"nodes={pick['nodes']:.0f} workloads={pick['workloads']:.0f} "
        f"placements_per_s={pick['placements_per_s']:.0f} pass_ms_p99={pick['pass_ms_p99']:.0f} "
        f"pure_per_s={pick['pure_per_s']:.0f} ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
