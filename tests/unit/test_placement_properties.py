"""Placement properties over random clusters and queues (hypothesis), plus a timing print.

Invariants: no GPU index or CPU id is booked twice on a node; GPUs, CPUs, millicores
and memory never exceed the node; gangs are all or nothing; same inputs and seed give
the same pass; explanations count every node once; the backfill never delays the
head's planned start; a big gang is not starved by a stream of small ones.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dora.scheduler import (
    Affinity,
    Booking,
    ClusterState,
    GangRequest,
    GpuInfo,
    NodeView,
    PassResult,
    Request,
    WorkloadId,
    placement,
    schedule_pass,
)
from dora.scheduler.placement import (
    CAPACITY_FILTERS,
    NodeState,
    capacity_reason,
    fit_predicate,
    static_reason,
)

GIB = 1024**3
MODELS = ("V100", "A100", "T4")
CPU_MODELS = ("Xeon", "EPYC")


@st.composite
def clusters(draw: st.DrawFn) -> list[NodeView]:
    """1–20 nodes, 0–8 GPUs of 1–3 models, 1–64 CPUs, some not ready or cordoned."""
    models = MODELS[: draw(st.integers(1, 3))]
    nodes = []
    for i in range(draw(st.integers(1, 20))):
        node_model = draw(st.sampled_from(models))
        mixed = draw(st.integers(0, 9)) == 0
        gpus = tuple(
            GpuInfo(j, draw(st.sampled_from(models)) if mixed else node_model)
            for j in range(draw(st.integers(0, 8)))
        )
        nodes.append(
            NodeView(
                name=f"n{i:02d}",
                ready=draw(st.integers(0, 9)) > 0,
                scheduling_disabled=draw(st.integers(0, 14)) == 0,
                allow=draw(
                    st.sampled_from(
                        [
                            frozenset({"CPUWorkload", "GPUWorkload"}),
                            frozenset({"CPUWorkload", "GPUWorkload"}),
                            frozenset({"GPUWorkload"}),
                            frozenset({"CPUWorkload"}),
                        ]
                    )
                ),
                cpu_model=draw(st.sampled_from(CPU_MODELS)),
                cpu_ids=tuple(range(draw(st.integers(1, 64)))),
                memory_bytes=draw(st.integers(0, 64)) * GIB,
                gpus=gpus,
            )
        )
    return nodes


@st.composite
def requests(draw: st.DrawFn, node_names: Sequence[str] = ()) -> Request:
    cpu_kind = draw(st.sampled_from(["none", "count", "millicores"]))
    return Request(
        gpu_count=draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3, 4, 8])),
        gpu_models=draw(
            st.one_of(
                st.none(),
                st.lists(st.sampled_from(MODELS), min_size=1, max_size=2, unique=True).map(tuple),
            )
        ),
        cpu_count=draw(st.integers(0, 12)) if cpu_kind == "count" else None,
        cpu_millicores=draw(st.integers(1, 3000)) if cpu_kind == "millicores" else None,
        cpu_models=draw(st.sampled_from([None, None, None, ("Xeon",)])),
        node_name=draw(st.sampled_from([None] * 6 + list(node_names[:3]))),
        affinity=draw(st.sampled_from(list(Affinity))),
        memory_bytes=draw(st.sampled_from([None, None, None, 0, GIB, 4 * GIB])),
    )


@st.composite
def queues(draw: st.DrawFn, node_names: Sequence[str], prefix: str) -> list[GangRequest]:
    out = []
    for i in range(draw(st.integers(0, 12))):
        name = f"{prefix}{i}"
        out.append(
            GangRequest(
                workload=("z", "ws", name),
                replicas=tuple(f"{name}.{r}" for r in range(1, draw(st.integers(1, 4)) + 1)),
                request=draw(requests(node_names)),
                priority=draw(st.integers(0, 2)),
                submitted_at=float(draw(st.integers(0, 100))),
                max_run_time_s=draw(st.sampled_from([None, 10.0, 60.0, 300.0, 1000.0])),
            )
        )
    return out


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[NodeView], list[Booking], list[GangRequest], float, int]:
    """A cluster already running a first pass's work, a second queue, a time, a seed."""
    nodes = draw(clusters())
    names = [n.name for n in nodes]
    first = schedule_pass(nodes, [], draw(queues(names, "old")), now=0.0, rng=random.Random(1))
    existing = list(first.placements.values())
    now = float(draw(st.integers(0, 400)))
    return nodes, existing, draw(queues(names, "w")), now, draw(st.integers(0, 2**16))


def assert_capacity_respected(nodes: Iterable[NodeView], bookings: Iterable[Booking]) -> None:
    """Recount every node from scratch: nothing double-booked or over capacity."""
    per_node: dict[str, list[Booking]] = {}
    for booking in bookings:
        per_node.setdefault(booking.node, []).append(booking)
    for view in nodes:
        held = per_node.get(view.name, [])
        gpus = [i for b in held for i in b.gpu_indices]
        cpus = [c for b in held for c in b.cpu_ids]
        assert len(gpus) == len(set(gpus)), f"GPU booked twice on {view.name}"
        assert len(cpus) == len(set(cpus)), f"CPU booked twice on {view.name}"
        assert set(gpus) <= {g.index for g in view.gpus}
        assert set(cpus) <= set(view.cpu_ids)
        millicores = sum(b.millicores for b in held)
        assert millicores <= 1000 * (len(view.cpu_ids) - len(cpus)), view.name
        assert sum(b.memory_bytes for b in held) <= view.memory_bytes, view.name


def assert_booking_matches(view: NodeView, request: Request, booking: Booking) -> None:
    """A booking honours the filters and the request's exact figures."""
    assert static_reason(view, request) is None
    assert len(booking.gpu_indices) == request.gpu_count
    models = {g.index: g.model for g in view.gpus}
    if request.gpu_models is not None:
        assert all(models[i] in request.gpu_models for i in booking.gpu_indices)
    if request.cpu_count is not None:
        assert len(booking.cpu_ids) == request.cpu_count
    elif request.gpu_count and request.cpu_millicores is None:
        k = len(view.cpu_ids) // len(view.gpus)
        assert len(booking.cpu_ids) == k * request.gpu_count
    else:
        assert booking.cpu_ids == ()
    if request.memory_bytes is not None:
        assert booking.memory_bytes == request.memory_bytes


_settings = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(scenarios())
def test_pass_never_overbooks_and_gangs_are_all_or_nothing(
    scenario: tuple[list[NodeView], list[Booking], list[GangRequest], float, int],
) -> None:
    nodes, existing, queue, now, seed = scenario
    result = schedule_pass(nodes, existing, queue, now, random.Random(seed))
    assert_capacity_respected(nodes, [*existing, *result.placements.values()])
    views = {n.name: n for n in nodes}
    seen = [r.gang.workload for r in (*result.placed, *result.pending)]
    assert sorted(seen) == sorted(g.workload for g in queue)
    for placed in result.placed:
        assert set(placed.bookings) == set(placed.gang.replicas)
        for booking in placed.bookings.values():
            assert_booking_matches(views[booking.node], placed.gang.request, booking)
    for pending in result.pending:
        assert pending.bookings == {}
        assert pending.explanation is not None


@_settings
@given(scenarios())
def test_same_inputs_and_seed_give_the_same_pass(
    scenario: tuple[list[NodeView], list[Booking], list[GangRequest], float, int],
) -> None:
    nodes, existing, queue, now, seed = scenario
    one = schedule_pass(nodes, existing, queue, now, random.Random(seed))
    two = schedule_pass(list(reversed(nodes)), existing, queue[::-1], now, random.Random(seed))
    assert one.placements == two.placements
    assert {k: v.message for k, v in one.reasons.items()} == {
        k: v.message for k, v in two.reasons.items()
    }


@_settings
@given(scenarios())
def test_explanations_count_every_node_once(
    scenario: tuple[list[NodeView], list[Booking], list[GangRequest], float, int],
) -> None:
    nodes, existing, queue, now, seed = scenario
    result = schedule_pass(nodes, existing, queue, now, random.Random(seed))
    for explanation in result.reasons.values():
        assert explanation.nodes_total == len(nodes)
        assert explanation.nodes_fit == 0
        assert sum(rc.count for rc in explanation.reasons) == len(nodes)
        assert explanation.replicas_fit < explanation.replicas_total


@_settings
@given(scenarios())
def test_backfill_never_delays_the_head(
    scenario: tuple[list[NodeView], list[Booking], list[GangRequest], float, int],
) -> None:
    """At the head's planned start, its planned bookings are still free."""
    nodes, existing, queue, now, seed = scenario
    result = schedule_pass(nodes, existing, queue, now, random.Random(seed))
    reservation = result.reservation
    if reservation is None or reservation.start_at is None:
        return
    start = reservation.start_at
    still_running = [
        b
        for b in [*existing, *result.placements.values()]
        if b.ends_at is None or max(now, b.ends_at) > start
    ]
    at_start = ClusterState(nodes, still_running)
    for booking in reservation.plan.values():
        ns = at_start.by_name[booking.node]
        free_gpus = set().union(*ns.free_gpus.values()) if ns.free_gpus else set()
        assert set(booking.gpu_indices) <= free_gpus
        assert set(booking.cpu_ids) <= ns.free_cpus
        assert booking.memory_bytes <= ns.memory_free
        pool_after = 1000 * (len(ns.free_cpus) - len(booking.cpu_ids))
        assert ns.millicores_used + booking.millicores <= pool_after
        at_start.book(booking)


@_settings
@given(scenarios(), st.data())
def test_fast_predicate_agrees_with_the_filters(
    scenario: tuple[list[NodeView], list[Booking], list[GangRequest], float, int],
    data: st.DataObject,
) -> None:
    nodes, existing, _, _, _ = scenario
    state = ClusterState(nodes, existing)
    for _ in range(5):
        request = data.draw(requests([n.name for n in nodes]))
        fits = fit_predicate(request)
        for ns in state.nodes:
            reason = capacity_reason(ns, request)
            chained = next((r for f in CAPACITY_FILTERS if (r := f(ns, request))), None)
            assert reason is chained
            assert fits(ns) == (reason is None)


def _choose_by_scan(
    state: ClusterState,
    eligible: Sequence[NodeState],
    request: Request,
    fits: Callable[[NodeState], bool],
    workload: WorkloadId,
) -> NodeState | None:
    """The reference for the ranked index: filter every node, then score the list."""
    fitting = list(filter(fits, eligible))
    if not fitting:
        return None
    if request.affinity is Affinity.FIRST:
        return fitting[0]
    score = attrgetter("gpu_score" if request.gpu_count > 0 else "cpu_score")
    placed = state.siblings.get(workload, {})
    if request.affinity is Affinity.DISTRIBUTE:
        alone = [ns for ns in fitting if ns.name not in placed]
        if alone:
            return max(alone, key=score)
        return min(fitting, key=lambda ns: (placed[ns.name], -score(ns)))
    together = [ns for ns in fitting if ns.name in placed]
    if together:
        return min(together, key=lambda ns: (-placed[ns.name], score(ns)))
    return min(fitting, key=score)


@_settings
@given(scenarios())
def test_the_ranked_index_chooses_what_a_scan_of_every_node_chooses(
    scenario: tuple[list[NodeView], list[Booking], list[GangRequest], float, int],
) -> None:
    """First, Fill and Distribute pick from a per-request heap kept current by node
    stamps; a whole pass (gangs, undone gangs, backfill) must equal the plain scan."""
    nodes, existing, queue, now, seed = scenario
    ranked = schedule_pass(nodes, existing, queue, now, random.Random(seed))
    with mock.patch.object(placement, "_choose_ranked", _choose_by_scan):
        scanned = schedule_pass(nodes, existing, queue, now, random.Random(seed))
    assert ranked.placements == scanned.placements
    assert {k: v.message for k, v in ranked.reasons.items()} == {
        k: v.message for k, v in scanned.reasons.items()
    }


# ---------------------------------------------------------------- starvation


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_nodes=st.integers(1, 3))
def test_a_big_gang_is_not_starved_by_a_stream_of_small_ones(seed: int, n_nodes: int) -> None:
    """Small 1–2 GPU jobs keep arriving (more than the cluster can run); some declare a
    maxRunTime (their real runtime stays within it), some do not. A whole-node job
    queued at t=0 must start once the work in its way has ended."""
    rnd = random.Random(seed)
    nodes = [
        NodeView(
            f"n{i}",
            cpu_ids=tuple(range(16)),
            memory_bytes=64 * GIB,
            gpus=tuple(GpuInfo(j, "V100") for j in range(8)),
        )
        for i in range(n_nodes)
    ]
    runtime: dict[tuple[str, str, str], float] = {}

    def small(name: str, now: float) -> GangRequest:
        limit = rnd.choice([None, 60.0, 150.0, 300.0])
        runtime[("z", "ws", name)] = rnd.uniform(10.0, limit or 300.0)
        return GangRequest(
            ("z", "ws", name),
            (f"{name}.1",),
            Request(gpu_count=rnd.randint(1, 2)),
            submitted_at=now,
            max_run_time_s=limit,
        )

    # The cluster is full of small work when the big gang arrives.
    warmup = schedule_pass(nodes, [], [small(f"w{i}", -1.0) for i in range(8 * n_nodes)], -1.0)
    running = [
        (b, -1.0 + runtime[r.gang.workload]) for r in warmup.placed for b in r.bookings.values()
    ]
    head = GangRequest(("z", "ws", "big"), ("big.1",), Request(gpu_count=8), submitted_at=0.0)
    queue: list[GangRequest] = [head]
    step, started_at = 10.0, None
    for tick in range(300):
        now = tick * step
        running = [(b, end) for b, end in running if end > now]
        queue += [small(f"s{tick}-{k}", now) for k in range(rnd.randint(1, 3))]
        result = schedule_pass(nodes, [b for b, _ in running], queue, now, random.Random(tick))
        done = {r.gang.workload for r in result.placed}
        for placed in result.placed:
            for booking in placed.bookings.values():
                if placed.gang is head:
                    started_at = now
                else:
                    running.append((booking, now + runtime[placed.gang.workload]))
        if started_at is not None:
            break
        queue = [g for g in queue if g.workload not in done]
    assert started_at is not None, "the big gang never started"
    # Everything running when it first queued is gone by 300 s; then at most one
    # more round of maxRunTime-bounded backfill (≤ 300 s) can precede it.
    assert started_at <= 700.0


# ---------------------------------------------------------------- timing (printed, not asserted)


def test_print_placement_rate(capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [
        NodeView(
            f"node{i:04d}",
            cpu_model="Xeon",
            cpu_ids=tuple(range(64)),
            memory_bytes=512 * GIB,
            gpus=tuple(GpuInfo(j, "A100") for j in range(8)),
        )
        for i in range(1000)
    ]
    lines = []
    for affinity in Affinity:
        queue = [
            GangRequest(("z", "ws", f"w{i}"), (f"w{i}.1",), Request(gpu_count=1, affinity=affinity))
            for i in range(2000)
        ]
        began = time.perf_counter()
        result: PassResult = schedule_pass(nodes, [], queue, 0.0, random.Random(0))
        elapsed = time.perf_counter() - began
        assert len(result.placed) == 2000
        lines.append(f"{affinity.value}={2000 / elapsed:,.0f}/s")
    with capsys.disabled():
        print(f"\nplacements (1,000 nodes x 8 GPUs, 2,000 x 1 GPU): {' '.join(lines)}")
