"""Store benchmark: single-record latency and scoped listing, against a raw baseline.

    .venv/bin/python bench/store.py [--backend sqlite] [--n 10000] [--ops 2000]
    CONTACT_POINTS=127.0.0.1:9042 .venv/bin/python bench/store.py --backend cql --n 1000 --ops 500

Figures for the chosen backend (through the `Store` protocol, event loop included):
create / compare-and-set update / get latency (p50, p99 in µs), then listing with
``--n`` workloads spread over 10 workspaces and ``--n`` containers over 100 nodes:
one workspace, the whole zone, containers of one node and of one workload, pending(),
reading 1000 feed changes. The baseline, measured in the same run, is plain sqlite3
in the calling thread (same pragmas, one transaction per INSERT, the same JSON blob,
json.loads on read): the ratios say what the store layer costs. The last line holds
every figure as key=value. A backend is one entry in `BACKENDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dora.store import Key, NewRecord, Patch, Store, Write
from dora.store.sqlite import SqliteStore, Synchronous

BackendFactory = Callable[[Path], Awaitable[Store]]
Extra = Callable[[Path, int], Awaitable[dict[str, float]]]
WORKSPACES = 10
NODES = 100


async def sqlite_store(tmp: Path, synchronous: Synchronous = "NORMAL") -> Store:
    store = SqliteStore(tmp / f"bench-{synchronous.lower()}.sqlite3", synchronous=synchronous)
    await store.init()
    return store


async def sqlite_full_sync(tmp: Path, ops: int) -> dict[str, float]:
    """The durability option: the same creates with an fsync of the WAL per commit."""
    store = await sqlite_store(tmp, "FULL")
    try:
        return {"full_write_p50_us": (await single_record_latency(store, ops, "f"))["write_p50_us"]}
    finally:
        await store.close()


async def cql_store(tmp: Path) -> Store:
    """A fresh keyspace on ``CONTACT_POINTS`` (default 127.0.0.1:9042, e.g. the node of
    ``scripts/cassandra.sh start``)."""
    import os

    from dora.store.config import StoreSettings, open_store

    env = {
        "CONTACT_POINTS": os.environ.get("CONTACT_POINTS", "127.0.0.1:9042"),
        "DB_NAME": f"bench_{os.getpid()}",
        "INIT_DB": "1",
    }
    store = await open_store(StoreSettings.from_env(env))
    await store.truncate_all()  # type: ignore[attr-defined]
    return store


BACKENDS: dict[str, BackendFactory] = {"sqlite": sqlite_store, "cql": cql_store}
EXTRAS: dict[str, Extra] = {"sqlite": sqlite_full_sync}
"""Backend-specific figures, measured after the common ones."""


def workload_spec(i: int) -> dict[str, Any]:
    """A realistic ~1 KB Workload spec."""
    return {
        "image": "registry.local/team/trainer:2024.06",
        "replica": 1 + i % 4,
        "command": ["python", "-m", "trainer", "--epochs", "90", "--lr", "0.1"],
        "env": [{"name": f"VAR_{j}", "value": f"value-{i}-{j}"} for j in range(8)],
        "resources": {"cpu": {"count": "4000m"}, "gpu": {"count": 2, "product_name": "All"}},
        "volumes": [{"name": "data", "mountPath": "/data"}, {"name": "ckpt", "mountPath": "/c"}],
        "ports": [{"name": "tb", "port": 6006}],
        "restartPolicy": "OnFailure",
        "pullPolicy": "IfNotPresent",
        "labels": {"team": "vision", "project": f"p{i % 7}"},
    }


def micros(samples: list[int]) -> tuple[float, float]:
    """p50 and p99 of nanosecond samples, in µs."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) / 1000, p99 / 1000


async def timed_ms(call: Callable[[], Awaitable[object]], repeat: int = 5) -> float:
    """Median wall time of `call` in ms."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def single_record_latency(store: Store, ops: int, prefix: str) -> dict[str, float]:
    creates, updates, gets = [], [], []
    keys = [Key("Workload", "lat", f"w{i % WORKSPACES}", f"{prefix}{i}") for i in range(ops)]
    for i, k in enumerate(keys):
        new = NewRecord(k, workload_spec(i), owner="bench")
        t0 = time.perf_counter_ns()
        await store.create(new, actor="bench")
        creates.append(time.perf_counter_ns() - t0)
    for k in keys:
        t0 = time.perf_counter_ns()
        await store.update(
            k, Patch(observed={"state": "running"}), expected_version=1, actor="bench"
        )
        updates.append(time.perf_counter_ns() - t0)
    for k in keys:
        t0 = time.perf_counter_ns()
        await store.get(k)
        gets.append(time.perf_counter_ns() - t0)
    (c50, c99), (u50, u99), (g50, g99) = micros(creates), micros(updates), micros(gets)
    return {
        "write_p50_us": c50,
        "write_p99_us": c99,
        "cas_p50_us": u50,
        "cas_p99_us": u99,
        "read_p50_us": g50,
        "read_p99_us": g99,
    }


async def populate(store: Store, n: int) -> None:
    """n workloads over 10 workspaces; n containers over 100 nodes, 5% unplaced."""
    writes: list[Write] = []
    for i in range(n):
        workspace = f"w{i % WORKSPACES}"
        workload = Key("Workload", "z1", workspace, f"job{i}")
        writes.append(Write(workload, new=NewRecord(workload, workload_spec(i), owner="bench")))
        # Four containers per workload, in their workload's workspace.
        parent = i // 4 * 4
        node = "" if i % 20 == 0 else f"n{i % NODES}"
        box = Key("Container", "z1", f"w{parent % WORKSPACES}", f"job{parent}.{i % 4 + 1}")
        new = NewRecord(box, {"image": "x"}, "bench", node=node, parent=f"job{parent}")
        writes.append(Write(box, new=new))
    for start in range(0, len(writes), 1000):
        await store.batch(writes[start : start + 1000], actor="bench", fence=None)


async def listing(store: Store, n: int) -> dict[str, float]:
    await populate(store, n)
    start = await store.head("z1")
    for i in range(min(1000, n // WORKSPACES)):
        key = Key("Workload", "z1", "w0", f"job{i * WORKSPACES}")
        await store.update(key, Patch(observed={"i": i}), expected_version=1, actor="bench")
    counts = {
        "workspace": len(await store.list_records("Workload", zone="z1", workspace="w3")),
        "zone": len(await store.list_records("Workload", zone="z1")),
        "node": len(await store.list_records("Container", zone="z1", node="n7")),
        "pending": len(await store.pending("z1")),
    }
    print(f"listing sizes: {counts}")
    return {
        "list_ws_ms": await timed_ms(
            lambda: store.list_records("Workload", zone="z1", workspace="w3")
        ),
        "list_10k_ms": await timed_ms(lambda: store.list_records("Workload", zone="z1")),
        "by_node_ms": await timed_ms(lambda: store.list_records("Container", zone="z1", node="n7")),
        "by_parent_ms": await timed_ms(
            lambda: store.list_records("Container", zone="z1", workspace="w4", parent="job4")
        ),
        "pending_ms": await timed_ms(lambda: store.pending("z1")),
        "feed_1k_ms": await timed_ms(lambda: store.changes("z1", after=start, limit=1000)),
    }


def raw_baseline(tmp: Path, ops: int, n: int) -> dict[str, float]:
    """Plain sqlite3, same pragmas and blob, no store layer, no thread hop."""
    conn = sqlite3.connect(tmp / "raw.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, ws TEXT, v TEXT)")
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    writes, reads = [], []
    for i in range(ops):
        t0 = time.perf_counter_ns()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", (f"k{i}", "", dumps(workload_spec(i))))
        conn.execute("COMMIT")
        writes.append(time.perf_counter_ns() - t0)
    for i in range(ops):
        t0 = time.perf_counter_ns()
        json.loads(conn.execute("SELECT v FROM t WHERE k = ?", (f"k{i}",)).fetchone()[0])
        reads.append(time.perf_counter_ns() - t0)
    conn.execute("BEGIN")
    for i in range(n):
        conn.execute(
            "INSERT INTO t VALUES (?, ?, ?)", (f"z{i:06}", "zone", dumps(workload_spec(i)))
        )
    conn.execute("COMMIT")
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        rows = conn.execute("SELECT k, v FROM t WHERE ws = 'zone' ORDER BY k").fetchall()
        [json.loads(v) for _, v in rows]
        samples.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return {
        "raw_write_p50_us": micros(writes)[0],
        "raw_read_p50_us": micros(reads)[0],
        "raw_list_10k_ms": statistics.median(samples),
    }


async def run(backend: str, n: int, ops: int) -> dict[str, Any]:
    factory = BACKENDS[backend]
    with tempfile.TemporaryDirectory(prefix="dora-bench-") as tmp_name:
        tmp = Path(tmp_name)
        store = await factory(tmp)
        try:
            figures: dict[str, Any] = {"backend": backend, "n": n, "ops": ops}
            figures |= await single_record_latency(store, ops, "r")
            figures |= await listing(store, n)
        finally:
            await store.close()
        if extra := EXTRAS.get(backend):
            figures |= await extra(tmp, ops // 4)
        figures |= raw_baseline(tmp, ops, n)
    figures["write_ratio"] = figures["write_p50_us"] / figures["raw_write_p50_us"]
    figures["read_ratio"] = figures["read_p50_us"] / figures["raw_read_p50_us"]
    figures["list_ratio"] = figures["list_10k_ms"] / figures["raw_list_10k_ms"]
    if "full_write_p50_us" in figures:
        figures["full_vs_normal"] = figures["full_write_p50_us"] / figures["write_p50_us"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sqlite")
    parser.add_argument("--n", type=int, default=10_000, help="records listed per kind")
    parser.add_argument("--ops", type=int, default=2000, help="single-record operations")
    args = parser.parse_args()
    figures = asyncio.run(run(args.backend, args.n, args.ops))
    for name, value in figures.items():
        print(f"{name:>18}  {value:.1f}" if isinstance(value, float) else f"{name:>18}  {value}")
    print(
        " ".join(
            f"{name}={value:.2f}" if isinstance(value, float) else f"{name}={value}"
            for name, value in figures.items()
        )
    )


if __name__ == "__main__":
    main()
