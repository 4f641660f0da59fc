"""Where may each replica go, which node is best, and what exactly does it get.

Pure: plain data in, plain data out; randomness only from the `random.Random` passed
in. The stages follow kube-scheduler / Nomad: **filter → score → bind**, over a
`ClusterState` snapshot that precomputes every node's free sets once and is updated
incrementally as replicas are bound (no copies per candidate).

Filters (one tiny function each, first "no" wins, see `Reason`)
    ``NOT_READY``, ``SCHEDULING_DISABLED``, ``NOT_ALLOWED`` (``allow`` lacks
    GPUWorkload for ``gpu_count > 0``, else CPUWorkload), ``NODE_SELECTOR``,
    ``GPU_MODEL`` (None = All; a plain string filters; a tuple = any of), ``CPU_MODEL``,
    then capacity: ``GPU_CAPACITY``, ``CPU_CAPACITY``, ``MEMORY``; and ``RESERVED``
    while a node's room is held for the blocked head of the queue.

GPUs
    Exclusive indices, lowest free first, of any accepted model.

CPUs (exclusive ids and a shared millicore pool)
    Every node CPU is either *exclusively booked* (a whole-CPU container, or pinned to
    a GPU container) or in the node's *shared pool*. Millicore containers float over
    the pool; their sum must always fit in it:
    ``sum(millicores) <= 1000 * len(pool)``. Hence a request for ``c`` whole CPUs and
    ``m`` millicores fits iff ``1000 * (len(pool) - c) >= used_millicores + m``.

CPU pinning for GPU containers
    With ``n`` GPUs and ``C`` CPUs on a node, ``k = C // n``; the GPU at position
    ``i`` (by index) owns ``cpu_ids[i*k:(i+1)*k]``. A GPU container without an explicit
    CPU request books exactly the slices of its GPUs, so it needs GPUs whose slice is
    entirely free (*pinnable*). An explicit whole-CPU count books that many CPUs,
    its own GPUs' slices first; explicit millicores book no ids. CPU containers take
    CPUs outside the slices of free GPUs first (then from the highest-index free
    GPU's slice), so they cost GPU containers as little as possible.

Memory share (explicit ``memory_bytes`` wins)
    GPU container: ``memory // node_gpus * gpus``; whole CPUs:
    ``memory // node_cpus * cpus``; millicores: ``memory * m // (1000 * node_cpus)``;
    a CPU container with no CPU request reserves nothing. The memory filter keeps the
    sum of bookings within the node's memory (GPU and CPU shares can compete for it).

Scoring by affinity
    First: name order. Random: ``rng.choice`` over the fitting nodes in name order
    (same inputs and seed → same result). Distribute: fewest siblings, then most free
    (GPUs for a GPU request, then pool millicores, then memory). Fill: most siblings,
    then least free (best fit, less fragmentation).

    First, Fill and Distribute do not scan every node per replica: `ClusterState.best`
    keeps, per request, a heap of the fitting nodes by (rank, name order), and each
    booking or release re-pushes the node it changed (stale entries are dropped when
    they surface). The result is what the scan would pick (a property test compares
    them); a replica costs about log(nodes) instead of nodes. Random still scans.

Gangs
    `place_gang` binds all replicas one by one on the live state, each seeing the
    earlier ones (so Distribute spreads them and capacity is shared correctly); if one
    does not fit, every tentative booking is released and the gang stays pending with
    an `Explanation`. The greedy order is not an exhaustive search: a gang may be
    refused where a cleverer packing exists; it is then retried every pass.

Queue and backfill (`place_many`, `schedule_pass`) — EASY backfill
    Gangs are tried by priority (desc), then ``submitted_at`` (asc), then id. Until one
    is blocked, every gang that fits is placed. The first blocked gang is the *head*
    and gets a reservation computed from running bookings' end times
    (``ends_at`` = start + maxRunTime): its earliest start ``T`` is the first end time
    after which it would fit, and the nodes it would then use are *held*.

    * A later gang that has a maxRunTime and finishes by ``T``
      (``now + max_run_time_s <= T``) may use anything: it is gone before the head
      starts.
    * Any other later gang may use a held node only with what the head leaves free
      there at ``T`` (it must fit both now and in the head's planned state at ``T``);
      other nodes are free for all. So the head still starts at ``T``.
    * If the head would fit only once a booking *without* maxRunTime ends, ``T`` is
      unknown: later gangs with a maxRunTime may go anywhere (they delay the head by at
      most their own maxRunTime), gangs without one only on nodes the head could never
      use (nodes that fail its filters even when empty).
    * A head that does not fit even on the empty cluster gets no reservation: it can
      never start as the cluster is, so it holds nothing back.

    Only the head reserves: when it starts, the next blocked gang becomes the head. A
    higher-priority arrival takes the head's place (priorities are strict).
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter

from dora.scheduler.explain import Explanation, Rejection, count_rejections
from dora.scheduler.types import (
    CPU_WORKLOAD,
    GPU_WORKLOAD,
    Affinity,
    Booking,
    ContainerId,
    GangRequest,
    NodeView,
    Reason,
    Request,
    WorkloadId,
)

__all__ = [
    "CAPACITY_FILTERS",
    "STATIC_FILTERS",
    "ClusterState",
    "GangResult",
    "NodeState",
    "PassResult",
    "Reservation",
    "bind",
    "capacity_reason",
    "explain_gang",
    "filter_allow",
    "filter_cpu_capacity",
    "filter_cpu_model",
    "filter_gpu_capacity",
    "filter_gpu_model",
    "filter_memory",
    "filter_node_selector",
    "filter_ready",
    "filter_scheduling_disabled",
    "fit_predicate",
    "memory_share",
    "place_gang",
    "place_many",
    "queue_order",
    "schedule_pass",
    "static_reason",
]


# --------------------------------------------------------------------------- node state


class _NodeShape:
    """What never changes for a node during a pass; shared by all copies of its state."""

    __slots__ = (
        "cpu_gpu",
        "cpu_position",
        "cpu_set",
        "empty_state",
        "gpu_model",
        "gpu_position",
        "gpu_slice",
        "k",
        "mem_per_cpu",
        "mem_per_gpu",
        "n_cpus",
        "n_gpus",
        "slice_owner",
        "view",
    )

    def __init__(self, view: NodeView) -> None:
        # Deduplicated: a repeated id in a report must not count twice.
        ordered = sorted({g.index: g for g in view.gpus}.values(), key=lambda g: g.index)
        cpus = tuple(dict.fromkeys(view.cpu_ids))
        self.view = view
        self.n_gpus = len(ordered)
        self.n_cpus = len(cpus)
        self.k = self.n_cpus // self.n_gpus if self.n_gpus else 0
        k = self.k
        self.gpu_model = {g.index: g.model for g in ordered}
        self.gpu_position = {g.index: i for i, g in enumerate(ordered)}
        self.gpu_slice = {g.index: cpus[i * k : (i + 1) * k] for i, g in enumerate(ordered)}
        self.cpu_gpu = {c: g for g, owned in self.gpu_slice.items() for c in owned}
        self.slice_owner = {owned: g for g, owned in self.gpu_slice.items() if owned}
        """A GPU's whole CPU slice (as `bind` books it for one pinned GPU) → that GPU."""
        self.cpu_position = {c: i for i, c in enumerate(cpus)}
        self.cpu_set = frozenset(cpus)
        self.mem_per_gpu = view.memory_bytes // self.n_gpus if self.n_gpus else 0
        self.mem_per_cpu = view.memory_bytes // self.n_cpus if self.n_cpus else 0
        self.empty_state: NodeState | None = None
        """The node with nothing booked, built once (`NodeState.empty` copies it)."""


@functools.lru_cache(maxsize=1 << 15)
def _shape_of(view: NodeView) -> _NodeShape:
    """A node's shape, shared by every pass while its view stays the same."""
    return _NodeShape(view)


class NodeState:
    """One node's free resources during a pass, updated in place by `book`/`release`.

    ``pinnable`` is the subset of free GPUs whose aligned CPU slice is entirely free:
    the GPUs a default (pinned) GPU container can use. ``gpu_score``/``cpu_score`` are
    the free capacity folded into one integer (GPUs, then pool millicores, then memory)
    so that ranking is a C-level ``max``/``min`` over an attribute.
    A few static figures are copied from the shape to keep the hot loop flat.
    """

    __slots__ = (
        "cpu_score",
        "free_cpus",
        "free_gpus",
        "gpu_score",
        "k",
        "mem_per_gpu",
        "memory_free",
        "millicores_used",
        "n_free_gpus",
        "n_pinnable",
        "name",
        "pinnable",
        "shape",
        "siblings",
        "slice_busy",
        "view",
    )

    name: str
    view: NodeView
    shape: _NodeShape
    free_gpus: dict[str, set[int]]
    pinnable: dict[str, set[int]]
    n_free_gpus: int
    n_pinnable: int
    slice_busy: dict[int, int]
    free_cpus: set[int]
    millicores_used: int
    memory_free: int
    siblings: dict[WorkloadId, int]
    k: int
    mem_per_gpu: int
    gpu_score: int
    cpu_score: int

    @classmethod
    def empty(cls, view: NodeView, shape: _NodeShape | None = None) -> NodeState:
        """The node with nothing booked (a copy of the shape's empty state)."""
        shape = shape if shape is not None else _shape_of(view)
        template = shape.empty_state
        if template is None:
            template = shape.empty_state = cls._build_empty(view, shape)
        ns = template.copy()
        ns.view = view
        ns.name = view.name
        return ns

    @classmethod
    def _build_empty(cls, view: NodeView, shape: _NodeShape) -> NodeState:
        ns = cls.__new__(cls)
        ns.shape = shape
        ns.view = view
        ns.name = view.name
        ns.free_gpus = {}
        for index, model in ns.shape.gpu_model.items():
            ns.free_gpus.setdefault(model, set()).add(index)
        ns.pinnable = {model: set(free) for model, free in ns.free_gpus.items()}
        ns.n_free_gpus = ns.n_pinnable = ns.shape.n_gpus
        ns.slice_busy = dict.fromkeys(ns.shape.gpu_model, 0)
        ns.free_cpus = set(ns.shape.cpu_set)
        ns.millicores_used = 0
        ns.memory_free = view.memory_bytes
        ns.siblings = {}
        ns.k = ns.shape.k
        ns.mem_per_gpu = ns.shape.mem_per_gpu
        ns._rescore()
        return ns

    def copy(self) -> NodeState:
        """An independent copy (the static shape is shared)."""
        ns = NodeState.__new__(NodeState)
        ns.shape = self.shape
        ns.view = self.view
        ns.name = self.name
        ns.free_gpus = {m: set(s) for m, s in self.free_gpus.items()}
        ns.pinnable = {m: set(s) for m, s in self.pinnable.items()}
        ns.n_free_gpus = self.n_free_gpus
        ns.n_pinnable = self.n_pinnable
        ns.slice_busy = dict(self.slice_busy)
        ns.free_cpus = set(self.free_cpus)
        ns.millicores_used = self.millicores_used
        ns.memory_free = self.memory_free
        ns.siblings = dict(self.siblings)
        ns.k = self.k
        ns.mem_per_gpu = self.mem_per_gpu
        ns.gpu_score = self.gpu_score
        ns.cpu_score = self.cpu_score
        return ns

    def intersect(self, other: NodeState) -> NodeState:
        """What is free in both states: a booking that fits here fits in both."""
        ns = NodeState.empty(self.view, self.shape)
        for index, model in self.shape.gpu_model.items():
            if index not in self.free_gpus[model] or index not in other.free_gpus[model]:
                ns._take_gpu(index)
        for cpu in self.shape.cpu_set:
            if cpu not in self.free_cpus or cpu not in other.free_cpus:
                ns._take_cpu(cpu)
        ns.millicores_used = max(self.millicores_used, other.millicores_used)
        ns.memory_free = min(self.memory_free, other.memory_free)
        ns.siblings = self.siblings
        ns._rescore()
        return ns

    def _rescore(self) -> None:
        pool = 1000 * len(self.free_cpus) - self.millicores_used
        self.cpu_score = (pool << 64) + max(0, self.memory_free)
        self.gpu_score = (self.n_free_gpus << 128) + self.cpu_score

    # -- figures ------------------------------------------------------------------

    @property
    def pool_millicores(self) -> int:
        """Millicores still free in the shared pool."""
        return 1000 * len(self.free_cpus) - self.millicores_used

    @property
    def whole_cpus_free(self) -> int:
        """Whole CPUs that could still be booked without squeezing millicore containers."""
        return len(self.free_cpus) - (-(-self.millicores_used // 1000))

    def gpus_available(self, request: Request) -> int:
        """Free GPUs of the accepted models that this request could bind."""
        pinned = request.pins_cpus_to_gpus
        if request.gpu_models is None:
            return self.n_pinnable if pinned else self.n_free_gpus
        pool = self.pinnable if pinned else self.free_gpus
        return sum(len(pool[m]) for m in request.gpu_models if m in pool)

    def cpus_needed(self, request: Request) -> int:
        """Whole CPU ids one replica books here (pinned slices count)."""
        if request.pins_cpus_to_gpus:
            return request.gpu_count * self.shape.k
        return request.cpu_count or 0

    # -- booking ------------------------------------------------------------------

    def book(self, booking: Booking) -> None:
        """Take what ``booking`` holds. Existing bookings are trusted not to overlap."""
        shape = self.shape
        # `_take_gpu` inlined.
        for index in booking.gpu_indices:
            model = shape.gpu_model.get(index)
            if model is None:
                continue
            free = self.free_gpus[model]
            if index not in free:
                continue
            free.discard(index)
            self.n_free_gpus -= 1
            pinned = self.pinnable[model]
            if index in pinned:
                pinned.discard(index)
                self.n_pinnable -= 1
        free_cpus, cpus = self.free_cpus, booking.cpu_ids
        owner = shape.slice_owner.get(cpus)
        if owner is not None and free_cpus.issuperset(cpus):
            # The common case, one pinned GPU's whole free slice: what the loop below
            # does CPU by CPU, in a few set operations.
            free_cpus.difference_update(cpus)
            self.slice_busy[owner] += len(cpus)
            pinnable = self.pinnable[shape.gpu_model[owner]]
            if owner in pinnable:
                pinnable.discard(owner)
                self.n_pinnable -= 1
        else:
            # `_take_cpu` inlined: the hot loop (a pinned booking holds k CPUs per GPU).
            cpu_gpu = shape.cpu_gpu
            for cpu in cpus:
                if cpu not in free_cpus:
                    continue
                free_cpus.discard(cpu)
                owner = cpu_gpu.get(cpu)
                if owner is None:
                    continue
                self.slice_busy[owner] += 1
                pinnable = self.pinnable[shape.gpu_model[owner]]
                if owner in pinnable:
                    pinnable.discard(owner)
                    self.n_pinnable -= 1
        self.millicores_used += booking.millicores
        self.memory_free -= booking.memory_bytes
        if booking.workload is not None:
            self.siblings[booking.workload] = self.siblings.get(booking.workload, 0) + 1
        self._rescore()

    def release(self, booking: Booking) -> None:
        """Give back what ``booking`` held (the inverse of `book`)."""
        for index in booking.gpu_indices:
            self._give_gpu(index)
        for cpu in booking.cpu_ids:
            self._give_cpu(cpu)
        self.millicores_used -= booking.millicores
        self.memory_free += booking.memory_bytes
        if booking.workload is not None:
            left = self.siblings.get(booking.workload, 0) - 1
            if left > 0:
                self.siblings[booking.workload] = left
            else:
                self.siblings.pop(booking.workload, None)
        self._rescore()

    def _take_gpu(self, index: int) -> None:
        model = self.shape.gpu_model.get(index)
        if model is None or index not in self.free_gpus[model]:
            return
        self.free_gpus[model].discard(index)
        self.n_free_gpus -= 1
        if index in self.pinnable[model]:
            self.pinnable[model].discard(index)
            self.n_pinnable -= 1

    def _give_gpu(self, index: int) -> None:
        model = self.shape.gpu_model.get(index)
        if model is None or index in self.free_gpus[model]:
            return
        self.free_gpus[model].add(index)
        self.n_free_gpus += 1
        if self.slice_busy[index] == 0:
            self.pinnable[model].add(index)
            self.n_pinnable += 1

    def _take_cpu(self, cpu: int) -> None:
        if cpu not in self.free_cpus:
            return
        self.free_cpus.discard(cpu)
        owner = self.shape.cpu_gpu.get(cpu)
        if owner is None:
            return
        self.slice_busy[owner] += 1
        model = self.shape.gpu_model[owner]
        if owner in self.pinnable[model]:
            self.pinnable[model].discard(owner)
            self.n_pinnable -= 1

    def _give_cpu(self, cpu: int) -> None:
        if cpu in self.free_cpus or cpu not in self.shape.cpu_set:
            return
        self.free_cpus.add(cpu)
        owner = self.shape.cpu_gpu.get(cpu)
        if owner is None:
            return
        self.slice_busy[owner] -= 1
        model = self.shape.gpu_model[owner]
        if self.slice_busy[owner] == 0 and owner in self.free_gpus[model]:
            self.pinnable[model].add(owner)
            self.n_pinnable += 1


# --------------------------------------------------------------------------- filters


def filter_ready(node: NodeView, request: Request) -> Reason | None:
    """Only nodes that report in get work."""
    return None if node.ready else Reason.NOT_READY


def filter_scheduling_disabled(node: NodeView, request: Request) -> Reason | None:
    """An admin cordoned the node (``spec.schedulingDisabled``)."""
    return Reason.SCHEDULING_DISABLED if node.scheduling_disabled else None


def filter_allow(node: NodeView, request: Request) -> Reason | None:
    """The node's ``allow`` list must name the workload's kind."""
    kind = GPU_WORKLOAD if request.is_gpu else CPU_WORKLOAD
    return None if kind in node.allow else Reason.NOT_ALLOWED


def filter_node_selector(node: NodeView, request: Request) -> Reason | None:
    """``selectors.node.name`` pins the workload to one node."""
    if request.node_name is None or request.node_name == node.name:
        return None
    return Reason.NODE_SELECTOR


def filter_gpu_model(node: NodeView, request: Request) -> Reason | None:
    """A GPU request naming models needs a node with at least one GPU of those models."""
    if not request.is_gpu or request.gpu_models is None:
        return None
    models = request.gpu_models
    if any(gpu.model in models for gpu in node.gpus):
        return None
    return Reason.GPU_MODEL


def filter_cpu_model(node: NodeView, request: Request) -> Reason | None:
    """A request naming CPU models needs a node with one of them."""
    if request.cpu_models is None or node.cpu_model in request.cpu_models:
        return None
    return Reason.CPU_MODEL


def filter_gpu_capacity(ns: NodeState, request: Request) -> Reason | None:
    """Enough free GPUs of the accepted models (pinnable ones for a pinned request)."""
    if request.gpu_count <= 0 or ns.gpus_available(request) >= request.gpu_count:
        return None
    return Reason.GPU_CAPACITY


def filter_cpu_capacity(ns: NodeState, request: Request) -> Reason | None:
    """Whole CPUs and millicores fit in the pool without squeezing millicore tenants."""
    cpus = ns.cpus_needed(request)
    millicores = request.millicores
    if not cpus and not millicores:
        return None
    if 1000 * (len(ns.free_cpus) - cpus) >= ns.millicores_used + millicores:
        return None
    return Reason.CPU_CAPACITY


def filter_memory(ns: NodeState, request: Request) -> Reason | None:
    """The replica's memory share (or explicit memory) fits in what is left."""
    return None if memory_share(ns.shape, request) <= ns.memory_free else Reason.MEMORY


STATIC_FILTERS = (
    filter_ready,
    filter_scheduling_disabled,
    filter_allow,
    filter_node_selector,
    filter_gpu_model,
    filter_cpu_model,
)
"""Filters that look only at the node's spec and report: evaluated once per pass."""

CAPACITY_FILTERS = (filter_gpu_capacity, filter_cpu_capacity, filter_memory)
"""Filters over free resources: evaluated for each replica on the live state."""


def static_reason(node: NodeView, request: Request) -> Reason | None:
    """The first static filter that rejects ``node``, or None."""
    for check in STATIC_FILTERS:
        reason = check(node, request)
        if reason is not None:
            return reason
    return None


def capacity_reason(ns: NodeState, request: Request) -> Reason | None:
    """The first capacity filter that rejects ``ns`` as it is now, or None.

    The same rules as `CAPACITY_FILTERS`, written out once because explain and the
    reservation checks call it for every node.
    """
    gpus = request.gpu_count
    if gpus > 0:
        if ns.gpus_available(request) < gpus:
            return Reason.GPU_CAPACITY
        cpus = gpus * ns.k if request.pins_cpus_to_gpus else (request.cpu_count or 0)
    else:
        cpus = request.cpu_count or 0
    millicores = request.millicores
    if (cpus or millicores) and 1000 * (len(ns.free_cpus) - cpus) < ns.millicores_used + millicores:
        return Reason.CPU_CAPACITY
    if memory_share(ns.shape, request) > ns.memory_free:
        return Reason.MEMORY
    return None


def fit_predicate(request: Request) -> Callable[[NodeState], bool]:
    """``capacity_reason(ns, request) is None`` as a fast predicate for the hot loop.

    The common shapes (a pinned GPU request of any or one model; whole CPUs;
    millicores) get a flat lambda over precomputed figures, ~10x cheaper than the
    general function; anything else falls back to it. Tests check they agree.
    """
    gpus = request.gpu_count
    if request.memory_bytes is None:
        if gpus > 0 and request.pins_cpus_to_gpus:
            models = request.gpu_models
            if models is None:
                return lambda ns: (
                    ns.n_pinnable >= gpus
                    and ns.mem_per_gpu * gpus <= ns.memory_free
                    and (
                        not ns.millicores_used
                        or 1000 * (len(ns.free_cpus) - gpus * ns.k) >= ns.millicores_used
                    )
                )
            if len(models) == 1:
                model = models[0]
                return lambda ns: (
                    model in ns.pinnable
                    and len(ns.pinnable[model]) >= gpus
                    and ns.mem_per_gpu * gpus <= ns.memory_free
                    and (
                        not ns.millicores_used
                        or 1000 * (len(ns.free_cpus) - gpus * ns.k) >= ns.millicores_used
                    )
                )
        elif gpus <= 0 and request.cpu_count:
            cpus = request.cpu_count
            return lambda ns: (
                1000 * (len(ns.free_cpus) - cpus) >= ns.millicores_used
                and ns.shape.mem_per_cpu * cpus <= ns.memory_free
            )
    return lambda ns: capacity_reason(ns, request) is None


def memory_share(shape: _NodeShape | NodeView, request: Request) -> int:
    """Bytes one replica of ``request`` books on this node (see module docstring)."""
    if request.memory_bytes is not None:
        return request.memory_bytes
    if isinstance(shape, NodeView):
        shape = _shape_of(shape)
    if request.gpu_count > 0:
        return shape.mem_per_gpu * request.gpu_count
    if request.cpu_count:
        return shape.mem_per_cpu * request.cpu_count
    if request.millicores and shape.n_cpus:
        return shape.view.memory_bytes * request.millicores // (1000 * shape.n_cpus)
    return 0


def _figures(ns: NodeState, request: Request, reason: Reason) -> Rejection:
    """A capacity rejection with what one replica needs and what the node has free."""
    if reason is Reason.GPU_CAPACITY:
        return Rejection(reason, request.gpu_count, ns.gpus_available(request))
    if reason is Reason.CPU_CAPACITY:
        if request.millicores and request.cpu_count is None:
            return Rejection(reason, request.millicores, ns.pool_millicores)
        return Rejection(reason, ns.cpus_needed(request), max(0, ns.whole_cpus_free))
    if reason is Reason.MEMORY:
        return Rejection(reason, memory_share(ns.shape, request), max(0, ns.memory_free))
    return Rejection(reason)


# --------------------------------------------------------------------------- binding


def bind(
    ns: NodeState,
    request: Request,
    workload: WorkloadId | None = None,
    ends_at: float | None = None,
) -> Booking:
    """The exact resources one replica gets on ``ns`` (which must fit; not mutated)."""
    shape = ns.shape
    gpus: list[int] = []
    cpus: list[int] = []
    if request.gpu_count > 0:
        pool = ns.pinnable if request.pins_cpus_to_gpus else ns.free_gpus
        models = request.gpu_models if request.gpu_models is not None else tuple(pool)
        gpus = sorted(chain.from_iterable(pool[m] for m in models if m in pool))
        gpus = gpus[: request.gpu_count]
        if request.pins_cpus_to_gpus:
            cpus = [c for g in gpus for c in shape.gpu_slice[g]]
        elif request.cpu_count:
            own = [c for g in gpus for c in shape.gpu_slice[g] if c in ns.free_cpus]
            cpus = own[: request.cpu_count]
            if len(cpus) < request.cpu_count:
                taken = set(cpus)
                rest = [c for c in _cpu_preference(ns) if c not in taken]
                cpus += rest[: request.cpu_count - len(cpus)]
    elif request.cpu_count:
        cpus = _cpu_preference(ns)[: request.cpu_count]
    return Booking(
        node=ns.name,
        gpu_indices=tuple(gpus),
        cpu_ids=tuple(sorted(cpus)),
        millicores=request.millicores,
        memory_bytes=memory_share(shape, request),
        workload=workload,
        ends_at=ends_at,
    )


def _cpu_preference(ns: NodeState) -> list[int]:
    """Free CPUs, cheapest first: not tied to a free GPU, then the highest GPU's slice."""
    shape = ns.shape
    free_gpus = ns.free_gpus

    def cost(cpu: int) -> tuple[int, int, int]:
        owner = shape.cpu_gpu.get(cpu)
        if owner is None or owner not in free_gpus[shape.gpu_model[owner]]:
            return (0, 0, shape.cpu_position[cpu])
        return (1, -shape.gpu_position[owner], shape.cpu_position[cpu])

    return sorted(ns.free_cpus, key=cost)


# --------------------------------------------------------------------------- cluster state


class ClusterState:
    """The zone's nodes and live bookings, as mutable per-node free sets.

    Build it once per pass (or keep it across passes and feed it bookings); placing
    mutates it incrementally. Nodes are kept in name order, which is the order First
    uses and the order every tie is broken in.
    """

    __slots__ = (
        "_changed",
        "_eligible",
        "_index",
        "_position",
        "_stamp",
        "bookings",
        "by_name",
        "nodes",
        "siblings",
    )

    def __init__(self, nodes: Iterable[NodeView], bookings: Iterable[Booking] = ()) -> None:
        self.nodes: list[NodeState] = [
            NodeState.empty(view) for view in sorted(nodes, key=lambda v: v.name)
        ]
        self.by_name: dict[str, NodeState] = {ns.name: ns for ns in self.nodes}
        self.bookings: list[Booking] = []
        self.siblings: dict[WorkloadId, dict[str, int]] = {}
        """Per workload, how many of its bookings each node holds (for Distribute/Fill)."""
        self._eligible: dict[tuple[object, ...], list[NodeState]] = {}
        self._init_index()
        for booking in bookings:
            self.book(booking)

    def _init_index(self) -> None:
        self._position: dict[str, int] = {ns.name: i for i, ns in enumerate(self.nodes)}
        self._stamp: list[int] = [0] * len(self.nodes)
        """Per node position, bumped on every change of that node's free resources."""
        self._changed: list[int] = []
        """Positions of changed nodes, in order (the log each `_Ranking` catches up on)."""
        self._index: dict[Request, _Ranking] = {}

    def _touch(self, name: str) -> None:
        position = self._position[name]
        self._stamp[position] += 1
        self._changed.append(position)

    def best(
        self,
        request: Request,
        fits: Callable[[NodeState], bool],
        skip: Mapping[str, int] | frozenset[str] = frozenset(),
    ) -> NodeState | None:
        """The first eligible node that fits ``request`` in the order of its affinity
        (First: name; Fill: least free; Distribute: most free; ties by name), not in
        ``skip``: what a scan of every node would find, in about log(nodes) per call.

        Each request keeps a heap of (rank, position, stamp) over the nodes that
        fitted when last looked at; a node that changes is pushed again with its new
        rank, entries with an old stamp are dropped when they reach the top.
        """
        ranking = self._index.get(request)
        if ranking is None:
            ranking = self._index[request] = _Ranking(self, request, fits)
        return ranking.best(self, fits, skip)

    def copy(self, names: Iterable[str] | None = None, *, empty: bool = False) -> ClusterState:
        """An independent copy (of only ``names`` when given) for what-if simulations;
        ``empty``: the same nodes with nothing booked."""
        clone = ClusterState.__new__(ClusterState)
        keep = None if names is None else set(names)
        nodes = [ns for ns in self.nodes if keep is None or ns.name in keep]
        if empty:
            clone.nodes = [NodeState.empty(ns.view, ns.shape) for ns in nodes]
        else:
            clone.nodes = [ns.copy() for ns in nodes]
        clone.by_name = {ns.name: ns for ns in clone.nodes}
        clone.bookings = [] if empty else [b for b in self.bookings if b.node in clone.by_name]
        clone.siblings = {
            workload: kept
            for workload, per_node in ({} if empty else self.siblings).items()
            if (kept := {n: c for n, c in per_node.items() if n in clone.by_name})
        }
        clone._eligible = {}
        clone._init_index()
        return clone

    def book(self, booking: Booking) -> None:
        """Record a booking (bookings on unknown nodes are ignored)."""
        ns = self.by_name.get(booking.node)
        if ns is None:
            return
        ns.book(booking)
        self._touch(ns.name)
        self.bookings.append(booking)
        if booking.workload is not None:
            per_node = self.siblings.setdefault(booking.workload, {})
            per_node[booking.node] = per_node.get(booking.node, 0) + 1

    def release(self, booking: Booking) -> None:
        """Forget a booking previously recorded with `book` (matched by identity)."""
        ns = self.by_name.get(booking.node)
        if ns is None:
            return
        for position in range(len(self.bookings) - 1, -1, -1):
            if self.bookings[position] is booking:
                del self.bookings[position]
                ns.release(booking)
                self._touch(ns.name)
                self._forget_sibling(booking)
                return

    def release_many(self, bookings: Iterable[Booking]) -> None:
        """Forget several bookings at once (linear, unlike repeated `release`)."""
        gone = {id(b): b for b in bookings if b.node in self.by_name}
        if not gone:
            return
        self.bookings = [b for b in self.bookings if id(b) not in gone]
        for booking in gone.values():
            self.by_name[booking.node].release(booking)
            self._touch(booking.node)
            self._forget_sibling(booking)

    def _forget_sibling(self, booking: Booking) -> None:
        if booking.workload is None:
            return
        per_node = self.siblings.get(booking.workload)
        if per_node is None:
            return
        left = per_node.get(booking.node, 0) - 1
        if left > 0:
            per_node[booking.node] = left
        else:
            per_node.pop(booking.node, None)
            if not per_node:
                del self.siblings[booking.workload]

    def eligible(self, request: Request) -> list[NodeState]:
        """Nodes passing the static filters for ``request``, cached per request shape."""
        key = (
            request.is_gpu,
            request.gpu_models,
            request.cpu_models,
            request.node_name,
        )
        found = self._eligible.get(key)
        if found is None:
            found = [ns for ns in self.nodes if static_reason(ns.view, request) is None]
            self._eligible[key] = found
        return found


class _Ranking:
    """One request's fitting nodes in affinity order, kept as a lazy heap."""

    __slots__ = ("eligible", "heap", "rank", "seen")

    def __init__(
        self, state: ClusterState, request: Request, fits: Callable[[NodeState], bool]
    ) -> None:
        position = state._position
        self.eligible = {position[ns.name] for ns in state.eligible(request)}
        if request.affinity is Affinity.FIRST:
            self.rank: Callable[[NodeState], int] = lambda ns: 0
        else:
            score = _GPU_SCORE if request.gpu_count > 0 else _CPU_SCORE
            if request.affinity is Affinity.DISTRIBUTE:
                self.rank = lambda ns: -score(ns)
            else:
                self.rank = score
        stamp = state._stamp
        rank = self.rank
        self.heap = [
            (rank(ns), p, stamp[p])
            for ns in state.eligible(request)
            if fits(ns) and (p := position[ns.name]) is not None
        ]
        heapq.heapify(self.heap)
        self.seen = len(state._changed)

    def best(
        self,
        state: ClusterState,
        fits: Callable[[NodeState], bool],
        skip: Mapping[str, int] | frozenset[str],
    ) -> NodeState | None:
        heap, stamp, nodes = self.heap, state._stamp, state.nodes
        changed = state._changed
        if self.seen < len(changed):
            rank, eligible = self.rank, self.eligible
            for p in dict.fromkeys(changed[self.seen :]):
                if p in eligible and fits(ns := nodes[p]):
                    heapq.heappush(heap, (rank(ns), p, stamp[p]))
            self.seen = len(changed)
        skipped = []
        found = None
        while heap:
            entry = heap[0]
            p = entry[1]
            ns = nodes[p]
            if entry[2] != stamp[p] or not fits(ns):
                heapq.heappop(heap)
                continue
            if ns.name in skip:
                skipped.append(heapq.heappop(heap))
                continue
            found = ns
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return found


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class GangResult:
    """The outcome for one gang: every replica's booking, or why it is pending."""

    gang: GangRequest
    bookings: Mapping[str, Booking] = field(default_factory=dict)
    explanation: Explanation | None = None
    backfilled: bool = False
    """Placed while a reservation for an earlier blocked gang was in force."""

    @property
    def placed(self) -> bool:
        """All replicas got a booking."""
        return self.explanation is None


@dataclass(frozen=True, slots=True)
class Reservation:
    """The room held for the blocked head of the queue during one pass."""

    holder: WorkloadId
    start_at: float | None
    """Earliest start from running bookings' end times; None = waits on unbounded work."""
    nodes: tuple[str, ...]
    """Held nodes: the head's planned nodes, or every node it could use when unknown."""
    plan: Mapping[str, Booking] = field(default_factory=dict)
    """Where the head would go at ``start_at`` (empty when unknown)."""

    def note(self, now: float) -> str:
        """The sentence added to the head's explanation."""
        if self.start_at is None:
            held = len(self.nodes)
            return (
                f"next in line: start unknown (waits on workloads without maxRunTime); "
                f"{held} node{'' if held == 1 else 's'} held from workloads without maxRunTime"
            )
        wait = max(0.0, self.start_at - now)
        return f"next in line: expected to start in {wait:.0f}s on {', '.join(self.nodes)}"


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one scheduling pass decided."""

    placed: tuple[GangResult, ...]
    pending: tuple[GangResult, ...]
    reservation: Reservation | None = None

    @property
    def placements(self) -> dict[ContainerId, Booking]:
        """Every new booking, by container id."""
        return {
            result.gang.container_id(name): booking
            for result in self.placed
            for name, booking in result.bookings.items()
        }

    @property
    def reasons(self) -> dict[WorkloadId, Explanation]:
        """Why each pending gang is pending."""
        return {r.gang.workload: r.explanation for r in self.pending if r.explanation}


# --------------------------------------------------------------------------- gang placement


class _Hold:
    """The constraint a reservation puts on a gang that would still run at its start.

    ``blocked`` nodes are off limits; on ``shadow`` nodes the gang must also fit in the
    head's planned state at ``T`` (and is booked there too, so the head keeps fitting).
    """

    __slots__ = ("blocked", "shadow")

    def __init__(self, blocked: frozenset[str], shadow: dict[str, NodeState]) -> None:
        self.blocked = blocked
        self.shadow = shadow

    def view_of(self, ns: NodeState) -> NodeState | None:
        """The state a replica must fit in on ``ns``; None when the node is off limits."""
        if ns.name in self.blocked:
            return None
        twin = self.shadow.get(ns.name)
        return ns if twin is None else ns.intersect(twin)


def place_gang(
    state: ClusterState,
    gang: GangRequest,
    rng: random.Random | None = None,
    *,
    now: float = 0.0,
    _hold: _Hold | None = None,
) -> GangResult:
    """Bind every replica of ``gang`` on ``state`` or none (tentative ones are undone).

    ``rng`` serves Random affinity; without one, a generator seeded from the workload
    id is used so results stay reproducible. Bookings get ``ends_at = now +
    max_run_time_s`` when the gang has a maxRunTime.
    """
    request = gang.request
    if rng is None:
        rng = random.Random(repr(gang.workload))
    ends_at = None if gang.max_run_time_s is None else now + gang.max_run_time_s
    eligible = state.eligible(request)
    fits = fit_predicate(request)
    bound: list[tuple[str, Booking]] = []
    for name in gang.replicas:
        choice = _choose(state, eligible, request, fits, gang.workload, rng, _hold)
        if choice is None:
            explanation = explain_gang(
                state,
                request,
                replicas_total=len(gang.replicas),
                replicas_fit=len(bound),
                _hold=_hold,
            )
            for _, booking in reversed(bound):
                _unbook(state, booking, _hold)
            return GangResult(gang=gang, explanation=explanation)
        booking = bind(choice, request, gang.workload, ends_at)
        state.book(booking)
        if _hold is not None and booking.node in _hold.shadow:
            _hold.shadow[booking.node].book(booking)
        bound.append((name, booking))
    return GangResult(gang=gang, bookings=dict(bound))


def _unbook(state: ClusterState, booking: Booking, hold: _Hold | None) -> None:
    state.release(booking)
    if hold is not None and booking.node in hold.shadow:
        hold.shadow[booking.node].release(booking)


def _choose(
    state: ClusterState,
    eligible: Sequence[NodeState],
    request: Request,
    fits: Callable[[NodeState], bool],
    workload: WorkloadId,
    rng: random.Random,
    hold: _Hold | None,
) -> NodeState | None:
    """Filter the live capacity, score by affinity, return the state to bind on."""
    affinity = request.affinity
    if hold is None:
        if affinity is not Affinity.RANDOM:
            return _choose_ranked(state, eligible, request, fits, workload)
        fitting = list(filter(fits, eligible))
    else:
        fitting = _fitting_under_hold(eligible, request, fits, hold)
    if not fitting:
        return None
    if affinity is Affinity.FIRST:
        return fitting[0]
    if affinity is Affinity.RANDOM:
        return rng.choice(fitting)
    score = _GPU_SCORE if request.gpu_count > 0 else _CPU_SCORE
    placed = state.siblings.get(workload, {})
    if affinity is Affinity.DISTRIBUTE:
        alone = [ns for ns in fitting if ns.name not in placed] if placed else fitting
        if alone:
            return max(alone, key=score)
        return min(fitting, key=lambda ns: (placed[ns.name], -score(ns)))
    together = [ns for ns in fitting if ns.name in placed] if placed else []
    if together:
        return min(together, key=lambda ns: (-placed[ns.name], score(ns)))
    return min(fitting, key=score)


def _choose_ranked(
    state: ClusterState,
    eligible: Sequence[NodeState],
    request: Request,
    fits: Callable[[NodeState], bool],
    workload: WorkloadId,
) -> NodeState | None:
    """`_choose` without a hold for First, Fill and Distribute, through the ranked
    index instead of a scan of every node (same result)."""
    affinity = request.affinity
    if affinity is Affinity.FIRST:
        return state.best(request, fits)
    placed = state.siblings.get(workload, {})
    score = _GPU_SCORE if request.gpu_count > 0 else _CPU_SCORE
    if affinity is Affinity.DISTRIBUTE:
        found = state.best(request, fits, placed)
        if found is not None or not placed:
            return found
        fitting = list(filter(fits, eligible))  # every fitting node holds a sibling
        if not fitting:
            return None
        return min(fitting, key=lambda ns: (placed[ns.name], -score(ns)))
    if placed:
        ranking = state._index.get(request)
        position = state._position
        together = sorted(
            (
                ns
                for name in placed
                if (ns := state.by_name.get(name)) is not None
                and (ranking is None or position[name] in ranking.eligible)
                and fits(ns)
            ),
            key=lambda ns: position[ns.name],
        )
        if ranking is None:
            allowed = {ns.name for ns in eligible}
            together = [ns for ns in together if ns.name in allowed]
        if together:
            return min(together, key=lambda ns: (-placed[ns.name], score(ns)))
    return state.best(request, fits)


_GPU_SCORE: Callable[[NodeState], int] = attrgetter("gpu_score")
_CPU_SCORE: Callable[[NodeState], int] = attrgetter("cpu_score")


def _fitting_under_hold(
    eligible: Sequence[NodeState],
    request: Request,
    fits: Callable[[NodeState], bool],
    hold: _Hold,
) -> list[NodeState]:
    """Fitting nodes for a gang that must leave the head's reserved room alone."""
    fitting: list[NodeState] = []
    for ns in filter(fits, eligible):
        view = hold.view_of(ns)
        if view is None or (view is not ns and capacity_reason(view, request) is not None):
            continue
        fitting.append(view)
        if request.affinity is Affinity.FIRST:
            break
    return fitting


def explain_gang(
    state: ClusterState,
    request: Request,
    *,
    replicas_total: int = 1,
    replicas_fit: int = 0,
    _hold: _Hold | None = None,
) -> Explanation:
    """Run every filter on every node for the next replica and count the reasons."""
    rejections: list[Rejection] = []
    for ns in state.nodes:
        reason = static_reason(ns.view, request) or capacity_reason(ns, request)
        if reason is not None:
            rejections.append(_figures(ns, request, reason))
            continue
        if _hold is not None:
            view = _hold.view_of(ns)
            if view is None or (view is not ns and capacity_reason(view, request) is not None):
                rejections.append(Rejection(Reason.RESERVED))
    return count_rejections(
        len(state.nodes),
        rejections,
        request,
        replicas_total=replicas_total,
        replicas_fit=replicas_fit,
    )


# --------------------------------------------------------------------------- the queue


def queue_order(queue: Iterable[GangRequest]) -> list[GangRequest]:
    """Priority (desc), then submission time (asc), then workload id: a total order."""
    return sorted(queue, key=lambda g: (-g.priority, g.submitted_at, g.workload))


def schedule_pass(
    nodes: Iterable[NodeView],
    existing_bookings: Iterable[Booking],
    queue: Iterable[GangRequest],
    now: float,
    rng: random.Random | None = None,
) -> PassResult:
    """One pass from scratch: build the state, then `place_many`."""
    return place_many(ClusterState(nodes, existing_bookings), queue, now, rng)


def place_many(
    state: ClusterState,
    queue: Iterable[GangRequest],
    now: float,
    rng: random.Random | None = None,
) -> PassResult:
    """Place the queue in order on ``state`` (mutated), with EASY backfill.

    See the module docstring for the rule. ``rng`` is shared by all gangs in queue
    order, so the same inputs and seed give the same pass.
    """
    if rng is None:
        rng = random.Random(0)
    placed: list[GangResult] = []
    pending: list[GangResult] = []
    reservation: Reservation | None = None
    late_hold: _Hold | None = None
    failed: dict[tuple[Request, int, bool], Explanation] = {}
    for gang in queue_order(queue):
        hold: _Hold | None = None
        if reservation is not None and not _finishes_before(gang, reservation, now):
            hold = late_hold
        memo_key = (gang.request, len(gang.replicas), hold is not None)
        known = failed.get(memo_key)
        if known is not None:
            # Capacity only shrinks during a pass: the same gang cannot fit now either.
            pending.append(GangResult(gang=gang, explanation=known))
            continue
        result = place_gang(state, gang, rng, now=now, _hold=hold)
        if result.placed:
            if reservation is not None:
                result = GangResult(gang=gang, bookings=result.bookings, backfilled=True)
            placed.append(result)
            continue
        assert result.explanation is not None
        explanation = result.explanation
        failed[memo_key] = explanation
        if reservation is None:
            reserved = _reserve(state, gang, now)
            if reserved is not None:
                reservation, late_hold = reserved
                explanation = explanation.with_note(reservation.note(now))
        pending.append(GangResult(gang=gang, explanation=explanation))
    return PassResult(placed=tuple(placed), pending=tuple(pending), reservation=reservation)


def _finishes_before(gang: GangRequest, reservation: Reservation, now: float) -> bool:
    """An early gang: it has a maxRunTime and is over before the head can start."""
    if gang.max_run_time_s is None:
        return False
    if reservation.start_at is None:
        return True
    return now + gang.max_run_time_s <= reservation.start_at


def _reserve(
    state: ClusterState, head: GangRequest, now: float
) -> tuple[Reservation, _Hold] | None:
    """Earliest start of the blocked head and the room to hold for it.

    Simulates releasing running bookings in end-time order (binary search over the
    distinct end times; each probe is a fresh copy of the nodes the head may use).
    """
    eligible = [ns.name for ns in state.eligible(head.request)]
    ends = sorted({max(now, b.ends_at) for b in state.bookings if b.ends_at is not None})

    def attempt(until: float | None) -> tuple[ClusterState, GangResult] | None:
        if until is None:  # everything released
            sim = state.copy(eligible, empty=True)
        else:
            sim = state.copy(eligible)
            sim.release_many(
                b for b in sim.bookings if b.ends_at is not None and max(now, b.ends_at) <= until
            )
        result = place_gang(sim, head, random.Random(repr(head.workload)), now=now)
        return (sim, result) if result.placed else None

    found = attempt(ends[-1]) if ends else None
    if found is None:
        if attempt(None) is None:
            return None
        usable = tuple(
            ns.name
            for ns in state.eligible(head.request)
            if capacity_reason(NodeState.empty(ns.view, ns.shape), head.request) is None
        )
        return Reservation(head.workload, None, usable), _Hold(frozenset(usable), {})
    low, high = -1, len(ends) - 1  # attempt(ends[low]) fails (low=-1: nothing released)
    while high - low > 1:
        middle = (low + high) // 2
        probe = attempt(ends[middle])
        if probe is None:
            low = middle
        else:
            high, found = middle, probe
    sim, plan = found
    held = tuple(sorted({b.node for b in plan.bookings.values()}))
    shadow = {name: sim.by_name[name] for name in held}
    reservation = Reservation(head.workload, ends[high], held, dict(plan.bookings))
    return reservation, _Hold(frozenset(), shadow)
