"""Node agent benchmark: assignment-to-running latency against ``docker run -d``, and the
agent's memory with 50 containers, in one run.

    .venv/bin/python bench/agent.py [--runs 15] [--containers 50]

Starts a real ``dora server node`` process against a real ``dora server api`` (SQLite in
a temporary directory, 127.0.0.1) on this machine's Docker engine, with the production
report interval (5 s). Each run:

* ``agent``  — writes a Container record assigned to the node into the API's store (as
  the scheduler does) and polls the API (every 10 ms) until the container's observed
  state is ``running``: long-poll wake-up, Docker create + start, the agent's report,
  the API's write — the whole path a user waits for;
* ``docker`` — ``docker run -d`` of the same image and command (the CLI returns once the
  container started), the floor any agent on this engine can reach.

The two alternate, so both see the same engine load. Then ``--containers`` records are
assigned at once; when all run, the agent's RSS is read from /proc. Everything the bench
creates is labelled and removed at the end. The last line is::

    agent_p50_s=… docker_p50_s=… ratio=…
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.docker_images import BUSYBOX_IMAGE, ensure_busybox_image
from tests.helpers import ZONE, ApiProcess
from tests.integration.node_fixtures import (
    SESSION,
    TEST_LABEL,
    WORKSPACE,
    NodeCluster,
    cleanup_docker,
    docker,
    setup_cluster,
    teardown_cluster,
)

from dora.store import Conflict, Key, NewRecord, Patch, Store
from dora.store.config import open_store

CMD = ["sleep", "3600"]


def spec() -> dict[str, Any]:
    return {
        "replica": {"count": 1},
        "driver": "Docker",
        "selectors": {"cpu": {"product_name": "All", "count": "100m"}},
        "image": {"image": BUSYBOX_IMAGE, "pullPolicy": "IfNotPresent"},
        "config": {"cmd": CMD, "restartPolicy": "Never"},
        "network": {"mode": "none", "ports": []},
    }


async def assign(store: Store, node: str, name: str) -> None:
    key = Key("Container", ZONE, WORKSPACE, name)
    computed = {"node": node, "gpus": [], "cpus": [], "millicores": 100}
    record = NewRecord(
        key=key, spec=spec(), owner="bench", computed=computed, node=node, parent="bench"
    )
    await store.create(record, actor="scheduler")


async def drain(store: Store, name: str) -> None:
    key = Key("Container", ZONE, WORKSPACE, name)
    for _ in range(100):
        record = await store.get(key)
        try:
            await store.update(
                key, Patch(desired="drain"), expected_version=record.version, actor="scheduler"
            )
            return
        except Conflict:
            continue


async def observed_states(api: httpx.AsyncClient) -> dict[str, str]:
    r = await api.get("/v1/resources/container", params={"zone": ZONE, "workspace": WORKSPACE})
    r.raise_for_status()
    return {i["name"]: (i.get("observed") or {}).get("state", "") for i in r.json()["items"]}


async def wait_states(
    api: httpx.AsyncClient, names: list[str], state: str, within: float = 120.0
) -> float:
    """Seconds until every name reports `state` (polling every 10 ms)."""
    start = time.perf_counter()
    while True:
        states = await observed_states(api)
        if all(states.get(n) == state for n in names):
            return time.perf_counter() - start
        if time.perf_counter() - start > within:
            missing = {n: states.get(n) for n in names if states.get(n) != state}
            raise RuntimeError(f"not {state} after {within} s: {list(missing.items())[:5]}")
        await asyncio.sleep(0.01)


def docker_run_once(index: int) -> float:
    start = time.perf_counter()
    cid = docker(
        "run",
        "-d",
        "--network",
        "none",
        "--cpus",
        "0.1",
        "--label",
        f"{TEST_LABEL}={SESSION}",
        "--name",
        f"bench-docker-{SESSION}-{index}",
        BUSYBOX_IMAGE,
        *CMD,
    ).strip()
    elapsed = time.perf_counter() - start
    docker("rm", "-f", cid)
    return elapsed


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def bench(cluster: NodeCluster, node: str, pid: int, runs: int, many: int) -> None:
    store = await open_store(cluster.api.store_settings())
    headers = dict(cluster.admin.headers)
    async with httpx.AsyncClient(base_url=cluster.api.url, headers=headers, timeout=30) as api:
        try:
            # warm-up: first create pays for imports and caches on both sides
            await assign(store, node, "warm.1")
            await wait_states(api, ["warm.1"], "running")
            await drain(store, "warm.1")
            await wait_states(api, ["warm.1"], "deleted")
            docker_run_once(-1)

            agent_s: list[float] = []
            docker_s: list[float] = []
            for i in range(runs):
                name = f"lat{i}.1"
                start = time.perf_counter()
                await assign(store, node, name)
                await wait_states(api, [name], "running")
                agent_s.append(time.perf_counter() - start)
                await drain(store, name)
                await wait_states(api, [name], "deleted")
                docker_s.append(await asyncio.to_thread(docker_run_once, i))
                print(
                    f"run {i + 1:2d}: agent {agent_s[-1]:.3f} s, docker run -d {docker_s[-1]:.3f} s"
                )

            idle_rss = rss_mib(pid)
            names = [f"many{i}.1" for i in range(many)]
            start = time.perf_counter()
            for name in names:
                await assign(store, node, name)
            all_running = await wait_states(api, names, "running", within=300)
            # one more heartbeat with every container in it
            await asyncio.sleep(6)
            busy_rss = rss_mib(pid)
            print(
                f"{many} containers assigned at once: all running after "
                f"{time.perf_counter() - start:.2f} s (last seen {all_running:.2f} s)"
            )
            for name in names:
                await drain(store, name)
            await wait_states(api, names, "deleted", within=300)
        finally:
            await store.close()

    agent_p50 = statistics.median(agent_s)
    docker_p50 = statistics.median(docker_s)
    agent_p90 = statistics.quantiles(agent_s, n=10)[-1] if len(agent_s) >= 2 else agent_p50
    print(f"agent p50 {agent_p50:.3f} s p90 {agent_p90:.3f} s (n={len(agent_s)})")
    print(f"docker run -d p50 {docker_p50:.3f} s (n={len(docker_s)})")
    print(f"agent RSS idle {idle_rss:.1f} MiB, with {many} containers {busy_rss:.1f} MiB")
    print(
        f"agent_p50_s={agent_p50:.3f} docker_p50_s={docker_p50:.3f} "
        f"ratio={agent_p50 / docker_p50:.2f} agent_rss_mib_{many}={busy_rss:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--containers", type=int, default=50)
    args = parser.parse_args()
    if args.runs < 10:
        parser.error("--runs must be at least 10")
    ensure_busybox_image()
    with tempfile.TemporaryDirectory(prefix="dora-bench-agent-") as tmp:
        data_dir = Path(tmp)
        api = ApiProcess(data_dir).start().wait_ready()
        cluster = setup_cluster(api, data_dir)
        try:
            node = cluster.add_node("bench")
            agent = cluster.agent(
                node, log_level="INFO", DORA_REPORT_INTERVAL_S="5", DORA_STOP_GRACE_S="1"
            )
            cluster.wait_ready(node, agent)
            assert agent.proc is not None
            asyncio.run(bench(cluster, node, agent.proc.pid, args.runs, args.containers))
        finally:
            teardown_cluster(cluster)
            api.stop(timeout=2)
            cleanup_docker()


if __name__ == "__main__":
    main()
