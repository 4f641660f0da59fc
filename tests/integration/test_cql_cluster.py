"""The CQL store on a real three-node Cassandra cluster: one node dies, nothing is lost.

Needs the cluster `scripts/cassandra.sh start 3` runs on 127.0.0.1, .2 and .3
(`scripts/test.sh` starts it and sets ``DORA_TEST_CASSANDRA_CLUSTER=1``). The keyspace
has replication factor 3, so with one node killed (SIGKILL, by pid) every read and
write at LOCAL_QUORUM (and every compare-and-set at SERIAL) still has two replicas.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from dora.store import Key, NewRecord, Patch, StoreError
from dora.store.config import StoreSettings, open_store
from dora.store.cql import CqlStore

ROOT = Path(__file__).resolve().parents[2]
HOME = Path(os.environ.get("DORA_CASSANDRA_HOME", "/tmp/dora-cassandra"))
POINTS = "127.0.0.1:9042,127.0.0.2:9042,127.0.0.3:9042"
VICTIM = 3


def _pid(node: int) -> int:
    return int((HOME / f"node{node}" / "pid").read_text())


def _script(*args: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "cassandra.sh"), *args], check=True)


async def _host_state(store: CqlStore, address: str, up: bool, within: float) -> None:
    cluster = store._cluster
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        hosts = {h.address: h.is_up for h in cluster.metadata.all_hosts()}
        if hosts.get(address) is up:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the driver never saw {address} {'up' if up else 'down'}")


async def _retry(what: str, fn, within: float = 30.0):  # type: ignore[no-untyped-def]
    """Run `fn` until it succeeds; only while the driver notices the dead node."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await fn()
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_a_node_dies_and_comes_back_and_nothing_is_lost() -> None:
    env = {"CONTACT_POINTS": POINTS, "DB_NAME": f"cluster-{os.getpid()}", "INIT_DB": "1"}
    store = await open_store(StoreSettings.from_env(env))
    assert isinstance(store, CqlStore)
    killed = False
    try:
        rows = await store._run(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (store.keyspace,),
        )
        replication = dict(rows[0][0])
        assert replication.pop("class").endswith("NetworkTopologyStrategy")
        assert list(replication.values()) == ["3"], replication

        keys = [Key("Container", "z1", "w1", f"c{i}") for i in range(30)]
        for k in keys[:20]:
            await store.create(NewRecord(k, {"image": "busybox"}, "alice"), actor="alice")
        head = await store.head("z1")
        lease = await store.acquire_lease("scheduler/z1", "s1", ttl=120)
        assert lease is not None

        os.kill(_pid(VICTIM), signal.SIGKILL)
        killed = True
        await _host_state(store, f"127.0.0.{VICTIM}", up=False, within=60)

        # With one of three replicas gone: writes, compare-and-set, reads, the feed.
        began = time.monotonic()
        for k in keys[20:]:
            await store.create(NewRecord(k, {"image": "busybox"}, "bob"), actor="bob")
        for k in keys[:10]:
            await store.update(
                k, Patch(node="n1"), expected_version=1, actor="scheduler", fence=lease.fence
            )
        renewed = await store.renew_lease(lease, ttl=120)
        assert renewed is not None and renewed.token == lease.token
        assert len(await store.get_many(keys)) == 30
        assert [r.key for r in await store.list_records("Container", zone="z1", node="n1")] == (
            sorted(keys[:10])
        )
        changes = await store.changes("z1", after=head)
        assert [c.key.name for c in changes] == [f"c{i}" for i in range(20, 30)] + [
            f"c{i}" for i in range(10)
        ]
        print(
            f"\n20 writes + 10 CAS + reads with node {VICTIM} down: {time.monotonic() - began:.2f}s"
        )

        _script("start-node", str(VICTIM), "3")
        killed = False
        await _host_state(store, f"127.0.0.{VICTIM}", up=True, within=90)

        # Nothing lost, and the cluster takes writes with all three nodes again.
        records = await _retry("read back", lambda: store.get_many(keys))
        assert [r.key for r in records] == keys
        assert all(r.version == (2 if r.key in keys[:10] else 1) for r in records)
        assert all(r.node == "n1" for r in records[:10])
        await _retry(
            "write after restart",
            lambda: store.update(keys[0], Patch(desired="drain"), expected_version=2, actor="a"),
        )
        assert (await store.get(keys[0])).version == 3
        assert (await store.get_lease("scheduler/z1")) == renewed
    finally:
        if killed:
            _script("start-node", str(VICTIM), "3")
        await store.close()
