"""Placement: each filter, the binder, the scorers, gangs, and the queue with backfill."""

from __future__ import annotations

import random

import pytest

from dora.scheduler import (
    Affinity,
    Booking,
    ClusterState,
    GangRequest,
    GpuInfo,
    NodeState,
    NodeView,
    Reason,
    Request,
    bind,
    memory_share,
    place_gang,
    place_many,
    queue_order,
    schedule_pass,
)
from dora.scheduler.placement import (
    capacity_reason,
    filter_allow,
    filter_cpu_capacity,
    filter_cpu_model,
    filter_gpu_capacity,
    filter_gpu_model,
    filter_memory,
    filter_node_selector,
    filter_ready,
    filter_scheduling_disabled,
    static_reason,
)

GIB = 1024**3
V100 = "Tesla V100-SXM2-16GB"
A100 = "NVIDIA A100-SXM4-80GB"


def node(
    name: str,
    gpus: int = 8,
    model: str = V100,
    cpus: int = 64,
    memory_gib: int = 512,
    **kwargs: object,
) -> NodeView:
    """A node with ``gpus`` GPUs of one model and ``cpus`` CPUs numbered from 0."""
    return NodeView(
        name=name,
        cpu_model=str(kwargs.pop("cpu_model", "Xeon")),
        cpu_ids=tuple(range(cpus)),
        memory_bytes=memory_gib * GIB,
        gpus=tuple(GpuInfo(i, model) for i in range(gpus)),
        **kwargs,  # type: ignore[arg-type]
    )


def gang(
    name: str,
    replicas: int = 1,
    *,
    priority: int = 0,
    submitted_at: float = 0.0,
    max_run_time_s: float | None = None,
    **request: object,
) -> GangRequest:
    """A gang ``name.1 … name.N`` in workspace ``ws`` of zone ``z``."""
    return GangRequest(
        workload=("z", "ws", name),
        replicas=tuple(f"{name}.{i}" for i in range(1, replicas + 1)),
        request=Request(**request),  # type: ignore[arg-type]
        priority=priority,
        submitted_at=submitted_at,
        max_run_time_s=max_run_time_s,
    )


def state_of(*nodes: NodeView, bookings: tuple[Booking, ...] = ()) -> ClusterState:
    return ClusterState(nodes, bookings)


# ---------------------------------------------------------------- static filters


def test_not_ready_node_is_rejected() -> None:
    assert filter_ready(node("a", ready=False), Request()) is Reason.NOT_READY
    assert filter_ready(node("a"), Request()) is None


def test_scheduling_disabled_node_is_rejected() -> None:
    disabled = node("a", scheduling_disabled=True)
    assert filter_scheduling_disabled(disabled, Request()) is Reason.SCHEDULING_DISABLED
    assert filter_scheduling_disabled(node("a"), Request()) is None


def test_allow_list_must_name_the_workload_kind() -> None:
    cpu_only = node("a", allow=frozenset({"CPUWorkload"}))
    gpu_only = node("b", allow=frozenset({"GPUWorkload"}))
    assert filter_allow(cpu_only, Request(gpu_count=1)) is Reason.NOT_ALLOWED
    assert filter_allow(cpu_only, Request(cpu_count=1)) is None
    assert filter_allow(gpu_only, Request(cpu_count=1)) is Reason.NOT_ALLOWED
    assert filter_allow(gpu_only, Request(gpu_count=1)) is None


def test_gpu_count_zero_is_a_cpu_workload_even_with_a_gpu_model() -> None:
    cpu_only = node("a", allow=frozenset({"CPUWorkload"}))
    request = Request(gpu_count=0, gpu_models=(A100,), cpu_count=1)
    assert static_reason(cpu_only, request) is None


def test_node_selector_pins_to_one_node() -> None:
    request = Request(node_name="b")
    assert filter_node_selector(node("a"), request) is Reason.NODE_SELECTOR
    assert filter_node_selector(node("b"), request) is None
    assert filter_node_selector(node("a"), Request()) is None


def test_plain_string_gpu_model_filters() -> None:
    """The original ignored a plain product_name string; it must filter."""
    request = Request(gpu_count=1, gpu_models=(A100,))
    assert filter_gpu_model(node("a", model=V100), request) is Reason.GPU_MODEL
    assert filter_gpu_model(node("b", model=A100), request) is None


def test_gpu_model_list_means_any_of_and_none_means_all() -> None:
    any_of = Request(gpu_count=1, gpu_models=("T4", A100))
    assert filter_gpu_model(node("a", model=A100), any_of) is None
    assert filter_gpu_model(node("a", model=V100), any_of) is Reason.GPU_MODEL
    assert filter_gpu_model(node("a", model=V100), Request(gpu_count=1)) is None


def test_mixed_model_node_matches_when_one_gpu_matches() -> None:
    mixed = NodeView("m", cpu_ids=tuple(range(8)), gpus=(GpuInfo(0, V100), GpuInfo(1, A100)))
    assert filter_gpu_model(mixed, Request(gpu_count=1, gpu_models=(A100,))) is None


def test_cpu_model_filter() -> None:
    request = Request(cpu_count=1, cpu_models=("EPYC",))
    assert filter_cpu_model(node("a", cpu_model="Xeon"), request) is Reason.CPU_MODEL
    assert filter_cpu_model(node("a", cpu_model="EPYC"), request) is None
    assert filter_cpu_model(node("a"), Request(cpu_count=1)) is None


def test_static_filters_report_the_first_failure() -> None:
    bad = node("a", ready=False, scheduling_disabled=True, model=V100)
    assert static_reason(bad, Request(gpu_count=1, gpu_models=(A100,))) is Reason.NOT_READY


# ---------------------------------------------------------------- capacity filters


def test_gpu_capacity_counts_free_gpus_of_the_model() -> None:
    st = state_of(node("a", gpus=8), bookings=(Booking("a", gpu_indices=(0, 1, 2, 3, 4)),))
    ns = st.by_name["a"]
    assert filter_gpu_capacity(ns, Request(gpu_count=3)) is None
    assert filter_gpu_capacity(ns, Request(gpu_count=4)) is Reason.GPU_CAPACITY
    assert filter_gpu_capacity(ns, Request(gpu_count=1, gpu_models=(A100,))) is (
        Reason.GPU_CAPACITY
    )


def test_whole_cpu_capacity() -> None:
    st = state_of(node("a", gpus=0, cpus=4), bookings=(Booking("a", cpu_ids=(0, 1, 2)),))
    ns = st.by_name["a"]
    assert filter_cpu_capacity(ns, Request(cpu_count=1)) is None
    assert filter_cpu_capacity(ns, Request(cpu_count=2)) is Reason.CPU_CAPACITY


def test_millicores_share_the_pool_of_unbooked_cpus() -> None:
    st = state_of(node("a", gpus=0, cpus=2), bookings=(Booking("a", millicores=1500),))
    ns = st.by_name["a"]
    assert ns.pool_millicores == 500
    assert filter_cpu_capacity(ns, Request(cpu_millicores=500)) is None
    assert filter_cpu_capacity(ns, Request(cpu_millicores=600)) is Reason.CPU_CAPACITY
    # One whole CPU would leave 1000m for 1500m of millicore tenants.
    assert filter_cpu_capacity(ns, Request(cpu_count=1)) is Reason.CPU_CAPACITY
    assert ns.whole_cpus_free == 0


def test_memory_filter_uses_the_share_or_explicit_memory() -> None:
    st = state_of(
        node("a", gpus=0, cpus=4, memory_gib=8), bookings=(Booking("a", memory_bytes=5 * GIB),)
    )
    ns = st.by_name["a"]
    assert filter_memory(ns, Request(cpu_count=1)) is None  # share 2 GiB, 3 GiB free
    assert filter_memory(ns, Request(cpu_count=2)) is Reason.MEMORY  # share 4 GiB
    assert filter_memory(ns, Request(cpu_count=4, memory_bytes=GIB)) is None


def test_capacity_reason_agrees_with_the_individual_filters() -> None:
    st = state_of(
        node("a", gpus=2, cpus=4, memory_gib=4), bookings=(Booking("a", gpu_indices=(0,)),)
    )
    ns = st.by_name["a"]
    for request in (
        Request(gpu_count=2),
        Request(gpu_count=1, memory_bytes=8 * GIB),
        Request(cpu_count=5),
        Request(cpu_millicores=100),
    ):
        chain = [f(ns, request) for f in (filter_gpu_capacity, filter_cpu_capacity, filter_memory)]
        first = next((r for r in chain if r is not None), None)
        assert capacity_reason(ns, request) is first


# ---------------------------------------------------------------- binding


def test_gpus_are_bound_lowest_free_first_with_aligned_cpus() -> None:
    st = state_of(
        node("a", gpus=4, cpus=16), bookings=(Booking("a", gpu_indices=(0,), cpu_ids=(0, 1, 2, 3)),)
    )
    booking = bind(st.by_name["a"], Request(gpu_count=2))
    assert booking.gpu_indices == (1, 2)
    assert booking.cpu_ids == (4, 5, 6, 7, 8, 9, 10, 11)  # k = 16 // 4 = 4 per GPU


def test_pinned_cpus_follow_the_gpu_position_even_when_not_contiguous() -> None:
    st = state_of(
        node("a", gpus=4, cpus=8), bookings=(Booking("a", gpu_indices=(1,), cpu_ids=(2, 3)),)
    )
    booking = bind(st.by_name["a"], Request(gpu_count=2))
    assert booking.gpu_indices == (0, 2)
    assert booking.cpu_ids == (0, 1, 4, 5)


def test_explicit_cpu_count_takes_own_slices_first() -> None:
    st = state_of(node("a", gpus=4, cpus=16))
    booking = bind(st.by_name["a"], Request(gpu_count=1, cpu_count=6))
    assert booking.gpu_indices == (0,)
    assert booking.cpu_ids[:4] == (0, 1, 2, 3)
    assert len(booking.cpu_ids) == 6
    # The extra CPUs come from the slice of the highest free GPU, not from GPU 1's.
    assert set(booking.cpu_ids[4:]) <= {12, 13, 14, 15}


def test_millicores_book_no_cpu_ids() -> None:
    booking = bind(state_of(node("a", gpus=0, cpus=4)).by_name["a"], Request(cpu_millicores=500))
    assert booking.cpu_ids == ()
    assert booking.millicores == 500


def test_cpu_workload_prefers_cpus_not_tied_to_free_gpus() -> None:
    # 2 GPUs x 3 CPUs each (k = 7 // 2), CPU 6 tied to no GPU.
    st = state_of(node("a", gpus=2, cpus=7))
    assert bind(st.by_name["a"], Request(cpu_count=1)).cpu_ids == (6,)
    # Then the highest free GPU's slice, keeping GPU 0 pinnable.
    assert bind(st.by_name["a"], Request(cpu_count=3)).cpu_ids == (3, 4, 6)
    # CPUs of a GPU that is already busy (booked without pinning) come before free GPUs'.
    st.book(Booking("a", gpu_indices=(0,), millicores=100))
    assert bind(st.by_name["a"], Request(cpu_count=4)).cpu_ids == (0, 1, 2, 6)


def test_cpus_booked_by_a_cpu_workload_block_the_gpu_for_pinned_requests() -> None:
    st = state_of(node("a", gpus=2, cpus=4), bookings=(Booking("a", cpu_ids=(3,)),))
    ns = st.by_name["a"]
    assert ns.gpus_available(Request(gpu_count=1)) == 1  # GPU 1's slice {2, 3} is partly booked
    assert filter_gpu_capacity(ns, Request(gpu_count=2)) is Reason.GPU_CAPACITY
    # With an explicit CPU count the GPU itself is still usable.
    assert filter_gpu_capacity(ns, Request(gpu_count=2, cpu_count=1)) is None


def test_pinned_cpus_are_never_given_to_a_cpu_workload() -> None:
    st = state_of(node("a", gpus=2, cpus=4))
    gpu_booking = bind(st.by_name["a"], Request(gpu_count=2))
    st.book(gpu_booking)
    assert filter_cpu_capacity(st.by_name["a"], Request(cpu_count=1)) is Reason.CPU_CAPACITY
    assert filter_cpu_capacity(st.by_name["a"], Request(cpu_millicores=1)) is Reason.CPU_CAPACITY


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (Request(gpu_count=2), 2 * (64 * GIB // 8)),
        (Request(cpu_count=4), 4 * (64 * GIB // 32)),
        (Request(cpu_millicores=500), 64 * GIB * 500 // (1000 * 32)),
        (Request(gpu_count=1, memory_bytes=3 * GIB), 3 * GIB),
        (Request(), 0),
    ],
)
def test_memory_shares(request_: Request, expected: int) -> None:
    assert memory_share(node("a", gpus=8, cpus=32, memory_gib=64), request_) == expected


def _free(ns: NodeState) -> tuple[object, ...]:
    return (
        {m: sorted(g) for m, g in ns.free_gpus.items()},
        {m: sorted(g) for m, g in ns.pinnable.items()},
        ns.n_free_gpus,
        ns.n_pinnable,
        ns.slice_busy,
        sorted(ns.free_cpus),
        ns.gpu_score,
        ns.cpu_score,
    )


@pytest.mark.parametrize(
    "cpus",
    [
        (2, 3),  # GPU 1's whole slice: the set-operation path
        (3, 2),  # the same CPUs in another order: CPU by CPU
        (2,),  # part of a slice
        (1, 2, 3),  # across two slices
        (3, 4, 5),  # a slice and a CPU outside every slice
    ],
)
def test_booking_a_whole_gpu_slice_matches_booking_it_cpu_by_cpu(cpus: tuple[int, ...]) -> None:
    # `book` takes one pinned GPU's whole slice with set operations, anything else CPU
    # by CPU: both must leave the node in the same state, also over a partly busy slice.
    view = node("a", gpus=3, cpus=7)  # k = 2: slices (0, 1), (2, 3), (4, 5); CPU 6 free
    for earlier in ((), (Booking("a", cpu_ids=(3,)),)):
        fast, slow = NodeState.empty(view), NodeState.empty(view)
        for booking in earlier:
            fast.book(booking)
            slow.book(booking)
        fast.book(Booking("a", gpu_indices=(1,), cpu_ids=cpus))
        slow.book(Booking("a", gpu_indices=(1,)))
        for cpu in cpus:  # one CPU a booking: never a whole slice
            slow.book(Booking("a", cpu_ids=(cpu,)))
        assert _free(fast) == _free(slow)


def test_booking_carries_workload_and_end_time() -> None:
    st = state_of(node("a"))
    result = place_gang(st, gang("job", gpu_count=1, max_run_time_s=None), now=100.0)
    assert result.bookings["job.1"].ends_at is None
    timed = GangRequest(("z", "ws", "t"), ("t.1",), Request(gpu_count=1), max_run_time_s=60)
    booking = place_gang(st, timed, now=100.0).bookings["t.1"]
    assert booking.ends_at == 160.0
    assert booking.workload == ("z", "ws", "t")


# ---------------------------------------------------------------- scoring


def test_first_uses_name_order_not_input_order() -> None:
    st = ClusterState([node("c"), node("a"), node("b")])
    result = place_gang(st, gang("w", gpu_count=1, affinity=Affinity.FIRST))
    assert result.bookings["w.1"].node == "a"


def test_random_is_reproducible_with_a_seed_and_varies_across_seeds() -> None:
    nodes = [node(f"n{i}") for i in range(10)]

    def pick(seed: int) -> str:
        st = ClusterState(nodes)
        result = place_gang(
            st, gang("w", gpu_count=1, affinity=Affinity.RANDOM), random.Random(seed)
        )
        return result.bookings["w.1"].node

    assert pick(7) == pick(7)
    assert len({pick(seed) for seed in range(20)}) > 1


def test_distribute_spreads_replicas_over_nodes() -> None:
    st = ClusterState([node("a"), node("b"), node("c")])
    result = place_gang(st, gang("w", 3, gpu_count=1, affinity=Affinity.DISTRIBUTE))
    assert sorted(b.node for b in result.bookings.values()) == ["a", "b", "c"]


def test_distribute_prefers_the_node_with_most_free() -> None:
    st = state_of(node("a"), node("b"), bookings=(Booking("a", gpu_indices=(0, 1)),))
    result = place_gang(st, gang("w", gpu_count=1, affinity=Affinity.DISTRIBUTE))
    assert result.bookings["w.1"].node == "b"


def test_distribute_counts_siblings_already_running() -> None:
    running = Booking("a", gpu_indices=(0,), workload=("z", "ws", "w"))
    st = state_of(node("a"), node("b", gpus=4), bookings=(running,))
    result = place_gang(st, gang("w", gpu_count=1, affinity=Affinity.DISTRIBUTE))
    assert result.bookings["w.1"].node == "b"  # a has more free GPUs but already a sibling


def test_distribute_shares_a_node_when_it_must() -> None:
    st = ClusterState([node("a", gpus=2), node("b", gpus=1)])
    result = place_gang(st, gang("w", 3, gpu_count=1, affinity=Affinity.DISTRIBUTE))
    assert sorted(b.node for b in result.bookings.values()) == ["a", "a", "b"]


def test_fill_packs_replicas_on_one_node() -> None:
    st = ClusterState([node("a"), node("b")])
    result = place_gang(st, gang("w", 4, gpu_count=2, affinity=Affinity.FILL))
    assert {b.node for b in result.bookings.values()} == {"a"}


def test_fill_picks_the_best_fit() -> None:
    st = state_of(
        node("a"), node("b"), node("c"), bookings=(Booking("b", gpu_indices=(0, 1, 2, 3, 4, 5)),)
    )
    result = place_gang(st, gang("w", gpu_count=2, affinity=Affinity.FILL))
    assert result.bookings["w.1"].node == "b"


def test_cpu_requests_rank_by_cpu_pool() -> None:
    st = state_of(
        node("a", gpus=0, cpus=8),
        node("b", gpus=0, cpus=8),
        bookings=(Booking("a", cpu_ids=(0, 1, 2)),),
    )
    spread = place_gang(st.copy(), gang("s", cpu_count=1, affinity=Affinity.DISTRIBUTE))
    pack = place_gang(st.copy(), gang("p", cpu_count=1, affinity=Affinity.FILL))
    assert spread.bookings["s.1"].node == "b"
    assert pack.bookings["p.1"].node == "a"


# ---------------------------------------------------------------- gangs


def test_gang_is_all_or_nothing() -> None:
    st = ClusterState([node("a", gpus=4), node("b", gpus=4)])
    before = [(ns.n_free_gpus, len(ns.free_cpus), ns.memory_free) for ns in st.nodes]
    result = place_gang(st, gang("w", 3, gpu_count=4))
    assert not result.placed
    assert result.bookings == {}
    assert [(ns.n_free_gpus, len(ns.free_cpus), ns.memory_free) for ns in st.nodes] == before
    assert st.bookings == [] and st.siblings == {}
    assert result.explanation is not None
    assert result.explanation.replicas_fit == 2
    assert result.explanation.message.startswith("only 2/3 replicas fit")


def test_replicas_share_a_node_when_capacity_allows() -> None:
    st = ClusterState([node("a", gpus=8)])
    result = place_gang(st, gang("w", 4, gpu_count=2))
    assert result.placed
    gpus = sorted(i for b in result.bookings.values() for i in b.gpu_indices)
    assert gpus == list(range(8))


def test_state_copy_is_independent() -> None:
    st = ClusterState([node("a")])
    clone = st.copy()
    place_gang(clone, gang("w", gpu_count=8))
    assert st.by_name["a"].n_free_gpus == 8
    assert clone.by_name["a"].n_free_gpus == 0


def test_node_state_release_restores_pinnable_gpus() -> None:
    ns = NodeState.empty(node("a", gpus=2, cpus=4))
    cpu_booking = Booking("a", cpu_ids=(2,))
    ns.book(cpu_booking)
    assert ns.n_pinnable == 1
    ns.release(cpu_booking)
    assert ns.n_pinnable == 2 and ns.free_cpus == {0, 1, 2, 3}


# ---------------------------------------------------------------- the queue


def test_queue_order_is_priority_then_submission_time() -> None:
    queue = [
        gang("late", priority=0, submitted_at=5),
        gang("early", priority=0, submitted_at=1),
        gang("urgent", priority=10, submitted_at=9),
    ]
    assert [g.workload[2] for g in queue_order(queue)] == ["urgent", "early", "late"]


def test_higher_priority_gang_gets_the_last_gpus() -> None:
    queue = [
        gang("low", submitted_at=0, gpu_count=8),
        gang("high", priority=5, submitted_at=1, gpu_count=8),
    ]
    result = schedule_pass([node("a")], [], queue, now=0.0)
    assert [r.gang.workload[2] for r in result.placed] == ["high"]
    assert result.reasons[("z", "ws", "low")].count_of(Reason.GPU_CAPACITY) == 1


def test_placements_are_keyed_by_container_id() -> None:
    result = schedule_pass([node("a")], [], [gang("w", 2, gpu_count=1)], now=0.0)
    assert set(result.placements) == {("z", "ws", "w.1"), ("z", "ws", "w.2")}


def _busy(node_name: str, gpus: tuple[int, ...], ends_at: float | None) -> Booking:
    return Booking(node_name, gpu_indices=gpus, workload=("z", "ws", "running"), ends_at=ends_at)


def test_head_gets_a_reservation_at_the_earliest_end_time() -> None:
    running = (_busy("a", (0, 1, 2, 3), 100.0), _busy("b", (0, 1, 2, 3, 4), 50.0))
    result = schedule_pass([node("a"), node("b")], running, [gang("big", gpu_count=8)], now=0.0)
    assert result.reservation is not None
    assert result.reservation.start_at == 50.0
    assert result.reservation.nodes == ("b",)
    assert "expected to start in 50s on b" in result.reasons[("z", "ws", "big")].message


def test_short_gang_backfills_before_the_head_starts() -> None:
    running = (_busy("a", (0, 1, 2, 3), 100.0),)
    queue = [
        gang("big", submitted_at=0, gpu_count=8),
        gang("short", submitted_at=1, gpu_count=4, max_run_time_s=60),
    ]
    result = schedule_pass([node("a")], running, queue, now=0.0)
    placed = {r.gang.workload[2]: r for r in result.placed}
    assert set(placed) == {"short"}
    assert placed["short"].backfilled


def test_long_gang_may_not_take_what_the_head_needs() -> None:
    running = (_busy("a", (0, 1, 2, 3), 100.0),)
    queue = [
        gang("big", submitted_at=0, gpu_count=8),
        gang("long", submitted_at=1, gpu_count=4, max_run_time_s=500),
        gang("forever", submitted_at=2, gpu_count=1),
    ]
    result = schedule_pass([node("a")], running, queue, now=0.0)
    assert result.placed == ()
    for name in ("long", "forever"):
        explanation = result.reasons[("z", "ws", name)]
        assert explanation.count_of(Reason.RESERVED) == 1, explanation.message


def test_late_gang_may_use_what_the_head_leaves_on_a_held_node() -> None:
    running = (_busy("a", (0, 1, 2, 3, 4, 5), 100.0),)
    queue = [
        gang("head", submitted_at=0, gpu_count=4),
        gang("late", submitted_at=1, gpu_count=2),
        gang("greedy", submitted_at=2, gpu_count=1),
    ]
    result = schedule_pass([node("a")], running, queue, now=0.0)
    placed = {r.gang.workload[2]: r for r in result.placed}
    assert set(placed) == {"late"}
    assert result.reservation is not None
    # The head's plan at t=100 uses GPUs the late gang did not take.
    head_gpus = set(result.reservation.plan["head.1"].gpu_indices)
    assert head_gpus.isdisjoint(placed["late"].bookings["late.1"].gpu_indices)


def test_late_gang_may_use_nodes_the_head_does_not_need() -> None:
    running = (_busy("a", (0, 1, 2, 3), 100.0),)
    queue = [gang("big", submitted_at=0, gpu_count=8), gang("long", submitted_at=1, gpu_count=4)]
    result = schedule_pass([node("a"), node("b", gpus=4)], running, queue, now=0.0)
    assert [r.gang.workload[2] for r in result.placed] == ["long"]
    assert result.placed[0].bookings["long.1"].node == "b"


def test_unknown_head_start_lets_bounded_gangs_run_anywhere() -> None:
    running = (_busy("a", (0, 1, 2, 3), None),)
    queue = [
        gang("big", submitted_at=0, gpu_count=8),
        gang("bounded", submitted_at=1, gpu_count=2, max_run_time_s=3600),
        gang("unbounded", submitted_at=2, gpu_count=1),
    ]
    result = schedule_pass([node("a")], running, queue, now=0.0)
    assert [r.gang.workload[2] for r in result.placed] == ["bounded"]
    assert result.reservation is not None and result.reservation.start_at is None
    assert result.reasons[("z", "ws", "unbounded")].count_of(Reason.RESERVED) == 1


def test_unknown_head_start_keeps_unbounded_gangs_on_nodes_the_head_cannot_use() -> None:
    running = (_busy("a", (0, 1, 2, 3), None),)
    queue = [
        gang("big", submitted_at=0, gpu_count=8, gpu_models=(V100,)),
        gang("other", submitted_at=1, gpu_count=1),
    ]
    result = schedule_pass([node("a"), node("x", model=A100)], running, queue, now=0.0)
    assert [r.gang.workload[2] for r in result.placed] == ["other"]
    assert result.placed[0].bookings["other.1"].node == "x"


def test_a_head_that_can_never_fit_reserves_nothing() -> None:
    queue = [gang("huge", submitted_at=0, gpu_count=16), gang("small", submitted_at=1, gpu_count=1)]
    result = schedule_pass([node("a")], [], queue, now=0.0)
    assert result.reservation is None
    assert [r.gang.workload[2] for r in result.placed] == ["small"]


def test_only_the_first_blocked_gang_reserves() -> None:
    running = (_busy("a", (0, 1, 2, 3), 100.0), _busy("b", (0, 1, 2, 3), 200.0))
    queue = [
        gang("first", submitted_at=0, gpu_count=8),
        gang("second", submitted_at=1, gpu_count=8),
        gang("filler", submitted_at=2, gpu_count=4),
    ]
    result = schedule_pass([node("a"), node("b")], running, queue, now=0.0)
    assert result.reservation is not None and result.reservation.holder == ("z", "ws", "first")
    # Node b is not held by the head, so a long gang may take its free GPUs.
    assert [r.gang.workload[2] for r in result.placed] == ["filler"]
    assert result.placed[0].bookings["filler.1"].node == "b"


def test_identical_failed_gangs_reuse_the_explanation() -> None:
    queue = [gang(f"w{i}", gpu_count=8, submitted_at=i) for i in range(5)]
    st = ClusterState([node("a")])
    result = place_many(st, queue, now=0.0)
    assert len(result.placed) == 1 and len(result.pending) == 4
    messages = {r.explanation.message for r in result.pending[1:] if r.explanation}
    assert len(messages) == 1
