"""Faults on a running cluster of separate processes: an agent that dies, an API
replica killed with -9 during a burst of applies, the active scheduler killed, and two
schedulers racing on one store.

The cluster (module scope): two API replicas on one SQLite database (127.0.0.22 and
127.0.0.23), two schedulers of the zone (one leads, one stands by), two node agents
(node1 → replica 1, node2 → replica 2) sharing this machine's Docker engine. Short
windows keep it fast: a node silent 3 s is NOT_READY, its containers are re-placed
after 3 s more, a scheduler lease lives 3 s.

Each test first heals the cluster (restarts what an earlier test killed), so the tests
do not depend on their order.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from dora.api.schemas import GpuReport, NodeReport
from dora.client import Client, DoraError, NotFound
from dora.client import calls as api_calls
from dora.images import ensure_busybox_image
from tests.e2e.cluster import (
    ZONE,
    Api,
    Cluster,
    Service,
    admin_token_from_log,
    cluster_context,
    running,
    session_containers,
    wait_for,
    write_lock,
)

IMAGE = "dora-e2e/busybox:1"
pytestmark = pytest.mark.slow
WS = "e2e"
READY_S = 3.0
"""DORA_NODE_READY_S of the APIs and schedulers: a node silent this long is NOT_READY."""
GRACE_S = 3.0
"""DORA_NODE_LOST_GRACE_S: NOT_READY this long, its containers are re-placed."""
LEASE_TTL_S = 3.0
"""DORA_LEASE_TTL_S of the schedulers."""
TIMING = {
    "DORA_NODE_READY_S": f"{READY_S:g}",
    "DORA_NODE_LOST_GRACE_S": f"{GRACE_S:g}",
    "DORA_LEASE_TTL_S": f"{LEASE_TTL_S:g}",
}
AGENT_ENV = {"DORA_REPORT_INTERVAL_S": "0.5"}
NODES = ("node1", "node2")


def doc(kind: str, name: str, spec: dict[str, Any] | None = None, **meta: str) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, **meta}}
    if spec is not None:
        out["spec"] = spec
    return out


def workload(
    name: str,
    *,
    replicas: int = 1,
    cpu: str | int = "100m",
    gpu: int = 0,
    zone: str = ZONE,
    restart: str = "Always",
    cmd: str = "sleep 3600",
) -> dict[str, Any]:
    selectors: dict[str, Any] = {"cpu": {"count": cpu}}
    if gpu:
        selectors = {"gpu": {"product_name": "All", "count": gpu}}
    spec = {
        "replica": {"count": replicas},
        "selectors": selectors,
        "image": {"image": IMAGE, "pullPolicy": "Never"},
        "config": {"cmd": cmd, "restartPolicy": restart},
    }
    return doc("Workload", name, spec, zone=zone, workspace=WS)


@dataclass
class FaultCluster:
    c: Cluster
    apis: dict[int, Api]
    """By replica number: 1 (127.0.0.22) and 2 (127.0.0.23)."""
    schedulers: list[Service]
    agents: dict[str, Service]
    admin_token: str = field(repr=False)
    node_token: str = field(repr=False)

    def client(self, replica: int = 1) -> Client:
        return Client(self.apis[replica].url, self.admin_token, timeout=10)

    def heal(self) -> None:
        """Restart whatever an earlier test stopped; wait until it serves again."""
        for api in self.apis.values():
            if not api.alive():
                api.start().wait_ready()
        for service in [*self.schedulers, *self.agents.values()]:
            if not service.alive():
                service.start()
        wait_for(self.nodes_ready, within=20, what="node1 and node2 READY", context=self.c.tails)

    def nodes_ready(self) -> bool:
        with self.client() as dora:
            nodes = {n.name: n.status for n in dora.list("Node", zone=ZONE)}
        return all(nodes.get(n) == "READY" for n in NODES)

    def leader(self) -> Service | None:
        return leader_of(self.schedulers)


def leads(service: Service) -> bool:
    """Whether a scheduler's log says it leads: alive, and its last ``event=leader``
    line comes after its last start and its last ``event=lost_lease``."""
    text = service.log_text()
    lead = text.rfind("event=leader")
    return service.alive() and lead > max(text.rfind("event=lost_lease"), text.rfind("--- start"))


def leader_of(schedulers: list[Service]) -> Service | None:
    return next((s for s in schedulers if leads(s)), None)


@pytest.fixture(scope="module")
def fc() -> Iterator[FaultCluster]:
    ensure_busybox_image(IMAGE)
    with cluster_context("dora-e2e-faults-") as c:
        api1 = c.api("api-1", "127.0.0.22", init_db=True, **TIMING).start().wait_ready()
        admin = wait_for(
            lambda: (
                "admin token" in api1.log_text().lower() and admin_token_from_log(api1.log_path)
            ),
            within=10,
            what="the admin token",
            context=api1.tail,
        )
        api2 = c.api("api-2", "127.0.0.23", init_db=False, **TIMING).start().wait_ready()
        with Client(api1.url, admin) as dora:
            node_spec = {"allow": ["CPUWorkload", "GPUWorkload"]}
            documents = [
                doc("Workspace", WS),
                doc("Role", "node-rep", {"permission": {"Node": ["report"]}}),
                doc(
                    "User",
                    "node",
                    {
                        "resources": [
                            {"kind": "Node", "zone": "All", "workspace": "All", "role": "node-rep"}
                        ]
                    },
                ),
                doc(
                    "Node", "node1", {"endpoint": "https://127.0.0.41:3001", **node_spec}, zone=ZONE
                ),
                doc(
                    "Node", "node2", {"endpoint": "https://127.0.0.42:3001", **node_spec}, zone=ZONE
                ),
            ]
            items = dora.apply_many(documents).items
            assert all(i.ok for i in items), items
            node_token = dora.create_token("node", "node", "1").token
        c.dora("profile", "init", "admin", "--api-server", api1.url, "--token", admin)
        schedulers = [c.scheduler(f"scheduler-{x}", **TIMING).start() for x in "ab"]
        agents = {
            "node1": c.agent("agent-node1", api1, "node1", node_token, **AGENT_ENV).start(),
            "node2": c.agent("agent-node2", api2, "node2", node_token, **AGENT_ENV).start(),
        }
        cluster = FaultCluster(c, {1: api1, 2: api2}, schedulers, agents, admin, node_token)
        cluster.heal()
        yield cluster


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _container(dora: Client, name: str) -> Any | None:
    try:
        return dora.get("Container", name, zone=ZONE, workspace=WS)
    except NotFound:
        return None


def _delete_and_wait(fc: FaultCluster, name: str) -> None:
    with fc.client() as dora:
        with contextlib.suppress(NotFound):
            dora.delete("Workload", name, zone=ZONE, workspace=WS)

        def gone() -> bool:
            with contextlib.suppress(NotFound):
                dora.get("Workload", name, zone=ZONE, workspace=WS)
                return False
            return not session_containers(f"dora.workload={name}")

        wait_for(
            gone, within=30, what=f"workload {name} and its containers gone", context=fc.c.tails
        )


class CopySampler(threading.Thread):
    """Counts, every 0.2 s, the running Docker containers of one replica (by labels):
    the most seen at once, and each distinct (node, uid) seen running."""

    def __init__(self, container: str) -> None:
        super().__init__(daemon=True)
        self.labels = (f"dora.workspace={WS}", f"dora.container={container}")
        self.stop_event = threading.Event()
        self.most = 0
        self.worst: list[Any] = []
        self.seen: set[tuple[str, str]] = set()

    def run(self) -> None:
        while not self.stop_event.is_set():
            live = running(*self.labels)
            self.seen.update((c.node, c.uid) for c in live)
            if len(live) > self.most:
                self.most, self.worst = len(live), live
            self.stop_event.wait(0.2)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)


# ------------------------------------------------------------------------------ agent


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_stopped_agents_replica_moves_once_and_the_stale_copy_goes(
    fc: FaultCluster, sig: signal.Signals
) -> None:
    """The agent of the replica's node stops (its container keeps running: stopping an
    agent never stops containers). The node goes NOT_READY, the replica is re-placed on
    the other node within the grace period + 10 s, and when the agent comes back it
    removes its stale copy. Never two running copies.

    Both agents share one Docker engine here, and a container's Docker name is
    ``dora.<workspace>.<name>`` on every node: the new copy cannot be created while the
    stale one holds the name (the other agent reports ``creating`` with the name
    conflict, and retries), so it starts once the stale copy is gone. On separate
    engines it would start at once."""
    fc.heal()
    name = _unique("survivor")
    replica = f"{name}.1"
    with fc.client() as dora:
        dora.apply(workload(name))
        first = wait_for(
            lambda: (
                (r := _container(dora, replica))
                and (r.observed or {}).get("state") == "running"
                and r
            ),
            within=30,
            what=f"{replica} running",
            context=fc.c.tails,
        )
        lost_node = first.node
        other = next(n for n in NODES if n != lost_node)
        sampler = CopySampler(replica)
        sampler.start()
        try:
            fc.agents[lost_node].stop(sig)
            killed_at = time.monotonic()
            wait_for(
                lambda: (
                    {n.name: n.status for n in dora.list("Node", zone=ZONE)}[lost_node]
                    == "NOT_READY"
                ),
                within=READY_S + 5,
                what=f"{lost_node} NOT_READY",
                context=fc.c.tails,
            )
            not_ready_at = time.monotonic()
            moved = wait_for(
                lambda: (r := _container(dora, replica)) and r.node == other and r,
                within=GRACE_S + 10,
                what=f"{replica} re-placed on {other}",
                context=fc.c.tails,
            )
            moved_at = time.monotonic()
            assert moved.uid != first.uid, "a new copy, not the old record moved"
            # The stale copy still runs: its agent is gone, and Docker keeps it.
            stale = running(f"dora.uid={first.uid}")
            assert [c.node for c in stale] == [lost_node], stale
            # What the other node's agent makes of it while the stale copy runs.
            meanwhile = wait_for(
                lambda: (
                    (r := _container(dora, replica))
                    and (r.observed or {}).get("uid") == moved.uid
                    and r.observed
                ),
                within=10,
                what=f"{other}'s agent to report the new copy",
                context=fc.c.tails,
            )
            print(f"while the stale copy runs, {other} reports {meanwhile}")
            assert meanwhile["state"] != "running", meanwhile

            fc.agents[lost_node].start()
            wait_for(
                lambda: not session_containers(f"dora.uid={first.uid}"),
                within=20,
                what="the returning agent to remove its stale copy",
                context=fc.c.tails,
            )
            now_running = wait_for(
                lambda: (
                    (r := _container(dora, replica))
                    and (r.observed or {}).get("state") == "running"
                    and r
                ),
                within=30,
                what=f"{replica} running on {other}",
                context=fc.c.tails,
            )
            assert now_running.node == other and now_running.uid == moved.uid
            live = running(f"dora.workspace={WS}", f"dora.container={replica}")
            assert [(c.node, c.uid) for c in live] == [(other, moved.uid)], live
            wait_for(
                lambda: (other, moved.uid) in sampler.seen, within=10, what="the sampler's view"
            )
        finally:
            sampler.finish()
    assert sampler.most == 1, f"two live copies at once: {sampler.worst}"
    assert sampler.seen == {(lost_node, first.uid), (other, moved.uid)}, sampler.seen
    print(
        f"agent stopped ({sig.name}) → NOT_READY {not_ready_at - killed_at:.1f} s → "
        f"re-placed {moved_at - not_ready_at:.1f} s later"
    )
    _delete_and_wait(fc, name)


# ------------------------------------------------------------------------------ API


def test_kill9_api_during_an_apply_burst_keeps_every_acknowledged_write(
    fc: FaultCluster,
) -> None:
    fc.heal()
    zone = _unique("burst")
    with fc.client() as dora:
        dora.apply(doc("Zone", zone))
    target = fc.apis[1]
    acked: dict[str, tuple[dict[str, Any], int]] = {}
    tried: dict[str, list[dict[str, Any]]] = {}
    lock = threading.Lock()
    failures: list[str] = []
    killed = threading.Event()
    early: list[str] = []
    stop = threading.Event()

    def writer(index: int) -> None:
        with Client(target.url, fc.admin_token, timeout=5) as client:
            for i in itertools.count():
                if stop.is_set() or i >= 400:
                    return
                # Every third write updates an earlier document of this writer.
                n = i - 2 if i % 3 == 2 else i
                name = f"w{index}-{n}"
                document = workload(name, zone=zone, cmd=f"sleep {1000 + i}", gpu=1)
                with lock:
                    tried.setdefault(name, []).append(document["spec"])
                try:
                    result = client.apply(document)
                except DoraError as exc:
                    with lock:
                        failures.append(f"{name}: {type(exc).__name__}: {exc}")
                        if not killed.is_set():
                            early.append(failures[-1])
                    continue
                with lock:
                    acked[name] = (document["spec"], result.version)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(writer, k) for k in range(4)]
        try:
            wait_for(lambda: len(acked) >= 40, within=30, what="40 acknowledged writes")
            killed.set()
            target.kill9()
            acked_before_kill = len(acked)
            wait_for(lambda: len(failures) >= 8, within=30, what="writes failing after the kill")
        finally:
            stop.set()
            for future in futures:
                future.result(timeout=60)
    assert acked_before_kill >= 40
    assert not early, f"writes failed before the kill: {early[:5]}"
    target.start().wait_ready()
    assert len(admin_token_lines(target)) == 1, "a restart prints no new admin token"

    for replica in (1, 2):
        with fc.client(replica) as dora:
            stored = {r.name: r for r in dora.list("Workload", zone=zone, workspace=WS)}
        missing = sorted(set(acked) - set(stored))
        assert not missing, f"replica {replica}: acknowledged but missing: {missing[:10]}"
        for name, (spec, version) in acked.items():
            record = stored[name]
            assert record.version >= version, (name, record.version, version)
            # The stored spec is the last acknowledged one, or one tried after it.
            attempts = tried[name]
            later = attempts[attempts.index(spec) :]
            assert any(_same_spec(record.spec, s) for s in later), (name, record.spec)
    print(f"{len(acked)} acknowledged writes, {len(failures)} failed, all present after restart")


def admin_token_lines(api: Api) -> list[str]:
    return [line for line in api.log_text().splitlines() if "admin token" in line.lower()]


def _same_spec(stored: dict[str, Any], sent: dict[str, Any]) -> bool:
    return bool(
        stored.get("config", {}).get("cmd") == sent["config"]["cmd"]
        and stored.get("replica", {}).get("count") == sent["replica"]["count"]
    )


# ------------------------------------------------------------------------------ scheduler


def test_the_standby_scheduler_takes_over_when_the_leader_is_killed(fc: FaultCluster) -> None:
    fc.heal()
    leader = wait_for(fc.leader, within=LEASE_TTL_S + 10, what="a leading scheduler")
    standby = next(s for s in fc.schedulers if s is not leader)
    leader.kill9()
    killed_at = time.monotonic()
    name = _unique("after-failover")
    with fc.client(2) as dora:
        dora.apply(workload(name))
        placed = wait_for(
            lambda: (r := _container(dora, f"{name}.1")) and r.node and r,
            within=LEASE_TTL_S + 8,
            what="the standby to place new work",
            context=fc.c.tails,
        )
        placed_at = time.monotonic()
        assert placed.node in NODES
        assert fc.leader() is standby, "the standby leads now"
        wait_for(
            lambda: (
                ((_container(dora, f"{name}.1") or placed).observed or {}).get("state") == "running"
            ),
            within=30,
            what="the new work running",
            context=fc.c.tails,
        )
    print(f"leader killed → new work placed by the standby in {placed_at - killed_at:.1f} s")
    _delete_and_wait(fc, name)


# ------------------------------------------------------------------------------ double booking


def pause_holding_no_lock(cluster: Cluster, service: Service, attempts: int = 10) -> None:
    """SIGSTOP `service` at a moment it holds no SQLite write lock.

    A stopped process that holds the embedded store's write lock stops every writer
    (APIs, schedulers) until it resumes: a limitation of SQLite on one host, not what
    the test is after. So after the SIGSTOP the test takes the write lock itself; when
    that fails, the stopped process holds it: resume it and try again."""
    for _ in range(attempts):
        service.send(signal.SIGSTOP)
        with write_lock(cluster.db_path, timeout=2.0) as free:
            if free:
                return
        service.send(signal.SIGCONT)
        # let it finish its transaction: wait until the lock is free again
        wait_for(lambda: _lock_free(cluster), within=15, what="the write lock free", interval=0.05)
    raise AssertionError(f"{service.name} held the write lock at every one of {attempts} tries")


def _lock_free(cluster: Cluster) -> bool:
    with write_lock(cluster.db_path, timeout=0.5) as free:
        return free


SIM_GPUS = 4
SIM_CPUS = 4
SIM_MODEL = "Tesla V100-SXM2-16GB"


class SimulatedNodes(threading.Thread):
    """Nodes with fake GPUs that report through the API's node route every 0.5 s."""

    def __init__(self, fc: FaultCluster, zone: str, names: list[str]) -> None:
        super().__init__(daemon=True)
        self.fc, self.zone, self.names = fc, zone, names
        self.stop_event = threading.Event()
        self.errors: list[str] = []

    def report(self, dora: Client, name: str) -> None:
        body = NodeReport(
            version="sim",
            cpu_model="Simulated CPU",
            cpu_count=SIM_CPUS,
            memory_total=64 << 30,
            memory_available=64 << 30,
            gpus=[
                GpuReport(index=i, uuid=f"GPU-{name}-{i}", product_name=SIM_MODEL)
                for i in range(SIM_GPUS)
            ],
            complete=False,
        )
        dora.call(api_calls.report(name, self.zone, f"sim-{name}", body))

    def run(self) -> None:
        with Client(self.fc.apis[2].url, self.fc.node_token, timeout=5) as dora:
            while not self.stop_event.is_set():
                for name in self.names:
                    try:
                        self.report(dora, name)
                    except DoraError as exc:
                        self.errors.append(str(exc))
                self.stop_event.wait(0.5)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)


def container_rows(fc: FaultCluster, zone: str, *, cli: bool = False) -> list[dict[str, Any]]:
    """Every container of `zone`: through ``dora get c -A -o json`` (``cli``), or the
    SDK (cheaper to poll)."""
    if cli:
        return fc.c.dora_json("get", "c", "-A", "-z", zone)
    with fc.client(2) as dora:
        rows = dora.list("Container", zone=zone, all_workspaces=True)
    return [r.model_dump(mode="json") for r in rows]


def bookings(rows: list[dict[str, Any]]) -> tuple[dict[str, list[str]], int]:
    """Every (node, gpus|cpus, id) held by a container (placed, not released), mapped
    to the containers holding it; and how many containers are placed."""
    held: dict[str, list[str]] = {}
    placed = 0
    for row in rows:
        computed = row.get("computed") or {}
        node = computed.get("node")
        if not node or computed.get("released"):
            continue
        placed += 1
        for kind in ("gpus", "cpus"):
            for index in computed.get(kind) or []:
                held.setdefault(f"{node}/{kind}/{index}", []).append(row["name"])
    return held, placed


def assert_no_double_booking(rows: list[dict[str, Any]]) -> int:
    held, placed = bookings(rows)
    doubles = {k: v for k, v in held.items() if len(v) > 1}
    assert not doubles, f"double-booked: {doubles}"
    return placed


def test_two_schedulers_never_double_book(fc: FaultCluster) -> None:
    """Three simulated nodes (4 fake GPUs, 4 CPUs each; a GPU pins a CPU) in a zone of
    their own, two schedulers of that zone, more demand than capacity. The leader is
    killed mid-burst, then the next leader is paused (SIGSTOP) while the other takes
    over and places more, then resumed with its stale view. No GPU or CPU id of a node
    is ever held by two containers."""
    fc.heal()
    zone = _unique("sim")
    nodes = [f"sim{i}" for i in range(3)]
    with fc.client() as dora:
        dora.apply(doc("Zone", zone))
        for i, name in enumerate(nodes):
            spec = {
                "endpoint": f"https://127.0.0.{51 + i}:3001",
                "allow": ["CPUWorkload", "GPUWorkload"],
            }
            dora.apply(doc("Node", name, spec, zone=zone))
    c = fc.c
    pair = [c.scheduler(f"sim-scheduler-{x}", zone=zone, **TIMING).start() for x in "ab"]
    sim = SimulatedNodes(fc, zone, nodes)
    sim.start()

    def apply_burst(dora: Client, prefix: str, count: int, before: Callable[[int], None]) -> None:
        for i in range(count):
            before(i)
            gpus = (0, 1, 2)[i % 3]
            dora.apply(workload(f"{prefix}-{i}", zone=zone, gpu=gpus, cpu=1))

    def settled() -> bool:
        """No double booking now, and the scheduler has had its say on everything:
        every container placed, or its workload carries a pending reason."""
        rows = container_rows(fc, zone)
        assert_no_double_booking(rows)
        with fc.client(2) as dora:
            workloads = {w.name: w for w in dora.list("Workload", zone=zone, all_workspaces=True)}
        for row in rows:
            if (row.get("computed") or {}).get("node") or row["desired"] != "run":
                continue
            owner = workloads.get(row["parent"])
            if owner is None or not (owner.computed or {}).get("reason"):
                return False
        return True

    def context() -> str:
        tables = [
            c.dora(*args, "-z", zone, check=False).stdout
            for args in (("get", "wk", "-A"), ("get", "c", "-A"))
        ]
        return "\n".join([*tables, f"simulated reports failed: {sim.errors[-3:]}", c.tails()])

    def check_cli() -> int:
        rows = container_rows(fc, zone, cli=True)
        placed = assert_no_double_booking(rows)
        for key in bookings(rows)[0]:
            node, kind, index = key.split("/")
            limit = SIM_GPUS if kind == "gpus" else SIM_CPUS
            assert node in nodes and 0 <= int(index) < limit, key
        return placed

    def no_op(_: int) -> None:
        return None

    try:
        first = wait_for(lambda: leader_of(pair), within=LEASE_TTL_S + 10, what="a leader")
        with fc.client(2) as dora:
            # 1. A burst with both schedulers up: more demand than the 12 GPUs/12 CPUs.
            apply_burst(dora, "a", 15, no_op)
            wait_for(settled, within=30, what="burst a decided", context=context)
            placed_a = check_cli()
            assert placed_a >= 6

            # 2. The leader killed mid-burst; the standby takes over and goes on.
            apply_burst(dora, "b", 6, lambda i: first.kill9() if i == 2 else None)
            second = wait_for(
                lambda: leader_of(pair), within=LEASE_TTL_S + 10, what="the standby leading"
            )
            assert second is not first
            first.start()  # back, as the standby
            for i in range(0, 15, 3):  # free capacity: the queue moves under the new leader
                dora.delete("Workload", f"a-{i}", zone=zone, workspace=WS)
            wait_for(settled, within=30, what="burst b decided", context=context)
            check_cli()

            # 3. The leader paused while idle; the other takes over and places a burst;
            #    the paused one resumes with a stale view and must write nothing.
            pause_holding_no_lock(c, second)
            try:
                wait_for(
                    lambda: leads(first),
                    within=LEASE_TTL_S + 10,
                    what="the restarted scheduler leading while the leader is paused",
                    context=context,
                )
                for i in range(1, 15, 3):
                    dora.delete("Workload", f"a-{i}", zone=zone, workspace=WS)
                apply_burst(dora, "c", 6, no_op)
                wait_for(settled, within=30, what="burst c decided", context=context)
            finally:
                second.send(signal.SIGCONT)
            wait_for(
                lambda: "event=lost_lease" in second.log_text(),
                within=LEASE_TTL_S + 10,
                what="the resumed scheduler to step down",
                context=context,
            )
            assert leads(first) and not leads(second)
            # The resumed one had its chance to write; look again.
            apply_burst(dora, "d", 3, no_op)
            wait_for(settled, within=30, what="burst d decided", context=context)
            check_cli()
        for service in pair:
            assert "Traceback" not in service.log_text(), service.tail()
    finally:
        sim.finish()
        for service in pair:
            service.stop()


# ------------------------------------------------------------------------------ busy store


def test_schedulers_outlive_a_database_busy_longer_than_the_busy_timeout() -> None:
    """Someone holds the SQLite write lock longer than the store's busy timeout (10 s):
    a long migration, a backup, a paused process. Writers get "database busy"; the
    schedulers (leader and standby) must retry, not exit — nobody restarts them here,
    and in a container a restart loop would only hide it. Once the lock is free one of
    them leads and places new work."""
    with cluster_context("dora-e2e-busy-") as c:
        api = c.api("api-1", "127.0.0.22", init_db=True, DORA_LEASE_TTL_S="3").start()
        api.wait_ready()
        token = wait_for(
            lambda: "admin token" in api.log_text().lower() and admin_token_from_log(api.log_path),
            within=10,
            what="the admin token",
        )
        pair = [c.scheduler(f"scheduler-{x}", DORA_LEASE_TTL_S="3").start() for x in "ab"]
        wait_for(lambda: leader_of(pair), within=15, what="a leader", context=c.tails)
        with write_lock(c.db_path, timeout=10) as held:
            assert held
            # Longer than the busy timeout; the lock is what is waited for, not time.
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline and all(s.alive() for s in pair):
                time.sleep(0.2)
        dead = [s.tail() for s in [api, *pair] if not s.alive()]
        assert not dead, "services exited on a busy database:\n" + "\n".join(dead)
        with Client(api.url, token) as dora:
            dora.apply(doc("Workspace", WS))
            dora.apply(workload("after-busy"))
            wait_for(
                lambda: _container(dora, "after-busy.1") is not None,
                within=15,
                what="the scheduler to reconcile new work after the lock",
                context=c.tails,
            )
