"""A GPU request waits, with the scheduler's reason, until GPUs free, then starts on
exactly the GPUs that were freed: real API server, real scheduler, real node agent,
real Docker containers. Only the GPUs are recorded.

The node's ``nvidia-smi`` (``NVIDIA_SMI_PATH``) is a two-line script printing the
recorded ``nvidia-smi -x -q`` of a machine with 8 Tesla V100s
(tests/data/gpu/nvidia-smi-8xV100-470.xml); there is no NVML here, so the agent's probe
falls back to it. The agent runs with ``DORA_GPU_MODE=runtime-env``: a GPU container
gets only ``NVIDIA_VISIBLE_DEVICES=<ids>`` (what the nvidia runtime reads where it is
the engine's default), no DeviceRequests, so it starts on this engine without the
NVIDIA runtime, and ``docker inspect`` shows which GPUs it was given.

The story: A and C take 4 V100s each (all 8); B asks for 4 and waits with
``0/1 nodes fit: 1 no free "Tesla V100-SXM2-16GB" (need 4, max free 0)`` and the
queue's note (API and ``dora why``); A is deleted; B runs on the 4 GPU ids A held.
"""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dora.client import Client, NotFound
from dora.images import ensure_busybox_image
from tests.e2e.cluster import (
    ZONE,
    Cluster,
    Service,
    admin_token_from_log,
    cluster_context,
    docker,
    free_port,
    session_containers,
    table,
    wait_for,
)

pytestmark = pytest.mark.slow
IMAGE = "dora-e2e/busybox:1"
WS = "gpus"
API_HOST = "127.0.0.24"
EXEC_HOST = "127.0.0.44"
RECORDING = Path(__file__).resolve().parents[1] / "data" / "gpu" / "nvidia-smi-8xV100-470.xml"
V100 = "Tesla V100-SXM2-16GB"
SUFFIX = uuid.uuid4().hex[:6]
"""Docker names are ``dora.<workspace>.<container>`` on a shared engine: keep ours apart."""


def recorded_gpus() -> list[dict[str, str]]:
    """What the recording says, read here without the agent's parser: per GPU in
    printed order, its product name and uuid."""
    root = ET.parse(RECORDING).getroot()  # noqa: S314 - a file of this repository
    return [
        {"product_name": str(g.findtext("product_name")), "uuid": str(g.findtext("uuid"))}
        for g in root.findall("gpu")
    ]


def gpu_workload(
    name: str, gpus: int, *, cmd: str = "sleep 3600", restart: str = "Never"
) -> dict[str, Any]:
    spec = {
        "selectors": {"gpu": {"product_name": V100, "count": gpus}},
        "image": {"image": IMAGE, "pullPolicy": "Never"},
        "config": {"cmd": cmd, "restartPolicy": restart},
    }
    metadata = {"name": name, "zone": ZONE, "workspace": WS}
    return {"apiVersion": "v1", "kind": "Workload", "metadata": metadata, "spec": spec}


@dataclass
class GpuCluster:
    c: Cluster
    api_url: str
    node: str
    agent: Service
    admin_token: str = field(repr=False)

    def client(self) -> Client:
        return Client(self.api_url, self.admin_token, timeout=10)

    def container(self, name: str) -> Any | None:
        with self.client() as dora:
            try:
                return dora.get("Container", name, zone=ZONE, workspace=WS)
            except NotFound:
                return None

    def wait_running(self, workload: str) -> Any:
        """The workload's one container once the agent reports it running on our node."""

        def check() -> Any | None:
            record = self.container(f"{workload}.1")
            if record is None or (record.observed or {}).get("state") != "running":
                return None
            return record

        record = wait_for(check, within=60, what=f"{workload}.1 running", context=self.c.tails)
        assert record.node == self.node, record
        return record


@pytest.fixture(scope="module")
def gc() -> Iterator[GpuCluster]:
    ensure_busybox_image(IMAGE)
    with cluster_context("dora-e2e-gpu-") as c:
        api = c.api("api", API_HOST, init_db=True).start().wait_ready()
        admin = wait_for(
            lambda: "admin token" in api.log_text().lower() and admin_token_from_log(api.log_path),
            within=10,
            what="the admin token",
            context=api.tail,
        )
        c.dora("profile", "init", "admin", "--api-server", api.url, "--token", admin)
        node = f"gpu-node-{SUFFIX}"
        port = free_port(EXEC_HOST)
        grant = {"kind": "Node", "zone": "All", "workspace": "All", "role": "node-rep"}
        endpoint = f"https://{EXEC_HOST}:{port}"
        documents = [
            {"apiVersion": "v1", "kind": "Workspace", "metadata": {"name": WS}},
            {
                "apiVersion": "v1",
                "kind": "Role",
                "metadata": {"name": "node-rep"},
                "spec": {"permission": {"Node": ["report"]}},
            },
            {
                "apiVersion": "v1",
                "kind": "User",
                "metadata": {"name": "node"},
                "spec": {"resources": [grant]},
            },
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node, "zone": ZONE},
                "spec": {"endpoint": endpoint, "allow": ["GPUWorkload"]},
            },
        ]
        with Client(api.url, admin) as dora:
            items = dora.apply_many(documents).items
            assert all(i.ok for i in items), items
            node_token = dora.create_token("node", "node", "1").token
        # The node's nvidia-smi: prints the recording, whatever it is asked (-x -q).
        smi = c.paths.root / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\nexec cat '{RECORDING}'\n")
        smi.chmod(0o755)
        c.scheduler("scheduler", DORA_RECREATE_BACKOFF_S="1").start()
        agent = c.agent(
            "agent",
            api,
            node,
            node_token,
            NVIDIA_SMI_PATH=str(smi),
            DORA_GPU_MODE="runtime-env",
            DORA_REPORT_INTERVAL_S="0.5",
            DORA_CRASH_LOOP_LIMIT="2",
            DORA_RESTART_BACKOFF_S="0.2",
            PORT=str(port),
            DORA_EXEC_BIND=EXEC_HOST,
        ).start()
        cluster = GpuCluster(c, api.url, node, agent, admin)

        def ready() -> bool:
            if not agent.alive():
                raise AssertionError(f"the agent exited:\n{agent.tail()}")
            with cluster.client() as dora:
                record = dora.get("Node", node, zone=ZONE)
            return record.status == "READY" and bool((record.observed or {}).get("gpus"))

        wait_for(ready, within=30, what=f"{node} READY with GPUs", context=c.tails)
        yield cluster
        for service in c.services:
            assert node_token not in service.log_text(), f"{service.name} logged a token"


def test_a_4_gpu_request_waits_with_a_reason_then_starts_on_the_freed_gpus(
    gc: GpuCluster,
) -> None:
    recorded = recorded_gpus()
    assert len(recorded) == 8 and {g["product_name"] for g in recorded} == {V100}

    # -- The inventory the agent reported is the recording's.
    with gc.client() as dora:
        reported = (dora.get("Node", gc.node, zone=ZONE).observed or {})["gpus"]
    assert [g["index"] for g in reported] == list(range(8))
    assert [{k: g[k] for k in ("product_name", "uuid")} for g in reported] == recorded
    header, rows = table(gc.c.dora("get", "gpu", gc.node, "-z", ZONE).stdout)
    cell = {name: header.index(name) for name in ("node", "product_name", "index", "booked")}
    listed = [
        (r[cell["node"]], r[cell["product_name"]], r[cell["index"]], r[cell["booked"]])
        for r in rows
    ]
    assert listed == [(gc.node, V100, str(i), "no") for i in range(8)]

    # -- A and C take all 8 GPUs, 4 each.
    a, b, c = (f"{x}-{SUFFIX}" for x in ("train-a", "train-b", "train-c"))
    with gc.client() as dora:
        dora.apply(gpu_workload(a, 4))
        dora.apply(gpu_workload(c, 4))
    a_gpus = sorted(gc.wait_running(a).computed["gpus"])
    c_gpus = sorted(gc.wait_running(c).computed["gpus"])
    assert len(a_gpus) == 4 and sorted(a_gpus + c_gpus) == list(range(8))

    # -- B asks for 4 and waits, saying why.
    # The counted reason, then the backfill note of the head of the queue: A and C have
    # no maxRunTime, so nobody can say when B starts, and the node is held for it.
    reason = (
        f'0/1 nodes fit: 1 no free "{V100}" (need 4, max free 0); next in line: start '
        "unknown (waits on workloads without maxRunTime); 1 node held from workloads "
        "without maxRunTime"
    )
    with gc.client() as dora:
        dora.apply(gpu_workload(b, 4))

        def queued() -> Any | None:
            record = dora.get("Workload", b, zone=ZONE, workspace=WS)
            return record if (record.computed or {}).get("reason") else None

        pending = wait_for(queued, within=30, what=f"{b}'s pending reason", context=gc.c.tails)
    assert pending.computed["reason"] == reason
    assert pending.status == "Pending"
    waiting = gc.container(f"{b}.1")
    assert waiting is None or not waiting.node, waiting
    why = gc.c.dora("why", "wk", b, "-g", WS, "-z", ZONE).stdout.splitlines()
    assert why[:2] == [f"workload/{b}: Pending", f"reason: {reason}"], why
    _, rows = table(gc.c.dora("get", "gpu", gc.node, "-z", ZONE).stdout)
    assert [r[cell["booked"]] for r in rows] == ["yes"] * 8
    assert not session_containers(f"dora.workload={b}"), "B has no container yet"

    # -- A goes: B runs on the node, on exactly the GPUs A held.
    a_container = session_containers(f"dora.workload={a}")
    assert [x.state for x in a_container] == ["running"], a_container
    with gc.client() as dora:
        dora.delete("Workload", a, zone=ZONE, workspace=WS)
    running = gc.wait_running(b)
    assert sorted(running.computed["gpus"]) == a_gpus
    assert not session_containers(f"dora.uid={a_container[0].uid}"), "A's container is gone"
    (docker_b,) = session_containers(f"dora.workload={b}")
    inspected = json.loads(docker("inspect", docker_b.id))[0]
    visible = [e for e in inspected["Config"]["Env"] if e.startswith("NVIDIA_VISIBLE_DEVICES=")]
    assert visible == [f"NVIDIA_VISIBLE_DEVICES={','.join(str(g) for g in a_gpus)}"]
    assert not inspected["HostConfig"].get("DeviceRequests"), "runtime-env: no device request"
    with gc.client() as dora:
        workload_b = dora.get("Workload", b, zone=ZONE, workspace=WS)
    assert workload_b.status == "Running" and not (workload_b.computed or {}).get("reason")

    # -- runtime-env on an engine whose default runtime is not nvidia: one warning.
    default_runtime = docker("info", "--format", "{{.DefaultRuntime}}").strip()
    warnings = gc.agent.log_text().count("event=gpu_mode_mismatch")
    assert warnings == (0 if default_runtime == "nvidia" else 1), gc.agent.tail()


def test_a_crash_looping_gpu_job_backs_off_and_frees_its_gpus_meanwhile(gc: GpuCluster) -> None:
    """The agent gives up on a container that keeps crashing (``failed``, "crash
    loop"); the scheduler frees its GPUs at once and places it again only after a
    backoff that doubles (1 s, then 2 s here), instead of at once and round the
    cluster."""
    with gc.client() as dora:  # start from free GPUs, whatever ran before
        for workload in dora.list("Workload", zone=ZONE, workspace=WS):
            dora.delete("Workload", workload.name, zone=ZONE, workspace=WS)
        wait_for(
            lambda: not dora.list("Container", zone=ZONE, workspace=WS),
            within=60,
            what="an empty workspace",
            context=gc.c.tails,
        )
        name = f"crashy-{SUFFIX}"
        dora.apply(gpu_workload(name, 2, cmd="sh -c 'exit 3'", restart="Always"))
        uids: list[str] = []

        def recreated(times: int) -> Any | None:
            record = gc.container(f"{name}.1")
            if record is None:
                return None
            computed = record.computed or {}
            observed = record.observed or {}
            if observed.get("state") == "failed":
                assert "crash loop" in str(observed.get("reason")), observed
            if record.uid not in uids:
                uids.append(record.uid)
            return record if computed.get("recreations") == times else None

        first = wait_for(lambda: recreated(1), within=60, what="a first re-creation")
        second = wait_for(lambda: recreated(2), within=60, what="a second re-creation")
        assert first.uid != second.uid
        events = dora.events("Workload", name, zone=ZONE, workspace=WS, limit=200)
    backoffs = [e.message for e in events if e.reason == "BackOff"]
    assert any("GPUs/CPUs released; restart 1 in 1 s" in m for m in backoffs), backoffs
    assert any("GPUs/CPUs released; restart 2 in 2 s" in m for m in backoffs), backoffs


def test_a_paused_gpu_container_keeps_its_gpus(gc: GpuCluster) -> None:
    """``dora pause c`` freezes a GPU container in place (``docker pause``): the real
    scheduler leaves it placed with its GPUs booked — a job that needs them waits —
    and the workload says the replica is paused; ``dora resume c`` thaws it there."""
    with gc.client() as dora:  # start from free GPUs, whatever ran before
        for workload in dora.list("Workload", zone=ZONE, workspace=WS):
            dora.delete("Workload", workload.name, zone=ZONE, workspace=WS)
        wait_for(
            lambda: not dora.list("Container", zone=ZONE, workspace=WS),
            within=60,
            what="an empty workspace",
            context=gc.c.tails,
        )
        frozen, later = f"frozen-{SUFFIX}", f"later-{SUFFIX}"
        dora.apply(gpu_workload(frozen, 8))
        before = gc.wait_running(frozen)
        scope = ("-g", WS, "-z", ZONE)
        done = gc.c.dora("pause", "c", f"{frozen}.1", *scope)
        assert done.stdout.strip() == f"container/{frozen}.1 paused", done

        def paused() -> Any | None:
            record = dora.get("Workload", frozen, zone=ZONE, workspace=WS)
            return record if record.status == "Paused" else None

        status = wait_for(paused, within=30, what=f"{frozen} Paused", context=gc.c.tails)
        assert status.computed["message"] == "0/1 replicas running, 1 paused"
        (docker_c,) = session_containers(f"dora.workload={frozen}")
        assert json.loads(docker("inspect", docker_c.id))[0]["State"]["Paused"] is True

        dora.apply(gpu_workload(later, 4))
        wait_for(
            lambda: (dora.get("Workload", later, zone=ZONE, workspace=WS).computed or {}).get(
                "reason"
            ),
            within=30,
            what=f"{later}'s pending reason",
            context=gc.c.tails,
        )
        reason = dora.get("Workload", later, zone=ZONE, workspace=WS).computed["reason"]
        assert "need 4, max free 0" in reason, reason
        still = gc.container(f"{frozen}.1")
        assert (still.uid, still.node, still.computed["gpus"]) == (
            before.uid,
            before.node,
            before.computed["gpus"],
        )

        done = gc.c.dora("resume", "c", f"{frozen}.1", *scope)
        assert done.stdout.strip() == f"container/{frozen}.1 resumed", done
        assert gc.wait_running(frozen).uid == before.uid
        assert json.loads(docker("inspect", docker_c.id))[0]["State"]["Paused"] is False
        dora.delete("Workload", frozen, zone=ZONE, workspace=WS)
        assert len(gc.wait_running(later).computed["gpus"]) == 4
