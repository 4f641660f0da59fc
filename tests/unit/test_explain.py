"""Explain: counted filter results read as one sentence and as a dict for `dora why`."""

from __future__ import annotations

from dora.scheduler import (
    Booking,
    ClusterState,
    GangRequest,
    GpuInfo,
    NodeView,
    Reason,
    Rejection,
    Request,
    count_rejections,
    describe_booking,
    explain_gang,
    place_gang,
    schedule_pass,
)

GIB = 1024**3
V100 = "Tesla V100-SXM2-16GB"


def gpu_node(name: str, gpus: int = 8, model: str = V100, **kwargs: object) -> NodeView:
    return NodeView(
        name=name,
        cpu_ids=tuple(range(64)),
        memory_bytes=256 * GIB,
        gpus=tuple(GpuInfo(i, model) for i in range(gpus)),
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_issue_example_reads_as_written() -> None:
    half_busy = [Booking(n, gpu_indices=(0, 1, 2, 3)) for n in ("a", "b")]
    state = ClusterState([gpu_node("a"), gpu_node("b"), gpu_node("c", ready=False)], half_busy)
    explanation = explain_gang(state, Request(gpu_count=8, gpu_models=(V100,)))
    assert explanation.message == (
        f'0/3 nodes fit: 2 no free "{V100}" (need 8, max free 4), 1 NOT_READY'
    )


def test_counts_add_up_to_the_number_of_nodes() -> None:
    state = ClusterState(
        [
            gpu_node("a", ready=False),
            gpu_node("b", scheduling_disabled=True),
            gpu_node("c", allow=frozenset({"CPUWorkload"})),
            gpu_node("d", model="T4"),
            gpu_node("e", gpus=2),
        ]
    )
    explanation = explain_gang(state, Request(gpu_count=4, gpu_models=(V100,)))
    assert explanation.nodes_total == 5
    assert explanation.nodes_fit == 0
    assert sum(rc.count for rc in explanation.reasons) == 5


def test_larger_counts_first_then_filter_order() -> None:
    explanation = count_rejections(
        4,
        [
            Rejection(Reason.MEMORY, 10, 1),
            Rejection(Reason.NOT_READY),
            Rejection(Reason.SCHEDULING_DISABLED),
            Rejection(Reason.SCHEDULING_DISABLED),
        ],
        Request(cpu_count=1),
    )
    assert [rc.reason for rc in explanation.reasons] == [
        Reason.SCHEDULING_DISABLED,
        Reason.NOT_READY,
        Reason.MEMORY,
    ]


def test_figures_come_from_the_node_with_most_free() -> None:
    explanation = count_rejections(
        3,
        [Rejection(Reason.GPU_CAPACITY, 4, 1), Rejection(Reason.GPU_CAPACITY, 4, 3)],
        Request(gpu_count=4),
    )
    assert explanation.message == "1/3 nodes fit: 2 no free GPU (need 4, max free 3)"


def test_gpu_model_lists_are_named() -> None:
    explanation = count_rejections(
        1, [Rejection(Reason.GPU_CAPACITY, 2, 0)], Request(gpu_count=2, gpu_models=("A", "B"))
    )
    assert explanation.message == '0/1 nodes fit: 1 no free "A" or "B" (need 2, max free 0)'


def test_cpu_and_memory_figures_have_units() -> None:
    state = ClusterState(
        [NodeView("a", cpu_ids=(0, 1), memory_bytes=4 * GIB)],
        [Booking("a", millicores=1800, memory_bytes=3 * GIB)],
    )
    millicores = explain_gang(state, Request(cpu_millicores=500))
    assert millicores.message == "0/1 nodes fit: 1 not enough CPU (need 500m, max free 200m)"
    whole = explain_gang(state, Request(cpu_count=1))
    assert whole.message == "0/1 nodes fit: 1 no free CPUs (need 1, max free 0)"
    memory = explain_gang(state, Request(cpu_millicores=100, memory_bytes=2 * GIB))
    assert memory.message == "0/1 nodes fit: 1 not enough memory (need 2.0 GiB, max free 1.0 GiB)"


def test_partial_gang_says_how_many_replicas_fit() -> None:
    state = ClusterState([gpu_node("a", gpus=4), gpu_node("b", gpus=4)])
    gang = GangRequest(("z", "ws", "w"), ("w.1", "w.2", "w.3", "w.4"), Request(gpu_count=3))
    result = place_gang(state, gang)
    assert result.explanation is not None
    assert result.explanation.message == (
        "only 2/4 replicas fit, then 0/2 nodes fit: 2 no free GPU (need 3, max free 1)"
    )


def test_structured_form_for_dora_why() -> None:
    state = ClusterState([gpu_node("a", ready=False), gpu_node("b", gpus=2)])
    result = schedule_pass(
        [ns.view for ns in state.nodes],
        [],
        [GangRequest(("z", "ws", "w"), ("w.1",), Request(gpu_count=4))],
        now=0.0,
    )
    data = result.reasons[("z", "ws", "w")].as_dict()
    assert data["nodes_total"] == 2
    assert data["nodes_fit"] == 0
    assert data["replicas_total"] == 1
    assert data["reasons"] == [
        {
            "reason": "NOT_READY",
            "count": 1,
            "need": None,
            "max_free": None,
            "unit": "",
            "text": "1 NOT_READY",
        },
        {
            "reason": "GPU_CAPACITY",
            "count": 1,
            "need": 4,
            "max_free": 2,
            "unit": "",
            "text": "1 no free GPU (need 4, max free 2)",
        },
    ]
    assert isinstance(data["message"], str) and data["message"].startswith("0/2 nodes fit")


def test_notes_are_appended() -> None:
    explanation = count_rejections(1, [Rejection(Reason.NOT_READY)], Request())
    noted = explanation.with_note("next in line")
    assert noted.message == "0/1 nodes fit: 1 NOT_READY; next in line"
    assert noted.as_dict()["notes"] == ["next in line"]


def test_describe_booking_for_events() -> None:
    booking = Booking("node2", gpu_indices=(0, 1), cpu_ids=(0, 1, 2, 3, 8), memory_bytes=64 * GIB)
    assert describe_booking(booking) == "node2 GPUs [0, 1] CPUs [0-3,8] memory 64.0 GiB"
    assert describe_booking(Booking("n", millicores=250)) == "n CPU 250m"


def test_static_reasons_name_what_the_node_lacks() -> None:
    gpu = Request(gpu_count=1, gpu_models=("A100",), node_name="n9")
    cpu = Request(cpu_count=1, cpu_models=("EPYC",))
    text = count_rejections(
        3,
        [
            Rejection(Reason.GPU_MODEL),
            Rejection(Reason.NOT_ALLOWED),
            Rejection(Reason.NODE_SELECTOR),
        ],
        gpu,
    ).message
    assert text == (
        '0/3 nodes fit: 1 not allowing GPUWorkload, 1 not node "n9", 1 without "A100"'
    ), text
    cpu_text = count_rejections(
        2, [Rejection(Reason.CPU_MODEL), Rejection(Reason.NOT_ALLOWED)], cpu
    )
    assert '1 without CPU "EPYC"' in cpu_text.message
    assert "1 not allowing CPUWorkload" in cpu_text.message
