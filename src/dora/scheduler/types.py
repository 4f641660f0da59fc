"""Plain input and output types of the pure scheduler core.

Everything here is a frozen dataclass or an enum: no I/O, no pydantic, no clock. The
scheduler loop (written later) builds these from store records with a thin adapter;
the ``parse_*`` helpers at the bottom cover the YAML spellings that adapter meets
(``product_name: All | "model" | [models]``, ``count: 4 | "500m"``,
``node.name: All | pwm.all | name``) so their rules live next to the types they fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

WorkloadId = tuple[str, str, str]
"""(zone, workspace, name) of a workload."""

ContainerId = tuple[str, str, str]
"""(zone, workspace, container name) of a container, e.g. ("dc1", "blue", "red.1")."""

CPU_WORKLOAD = "CPUWorkload"
GPU_WORKLOAD = "GPUWorkload"


class Affinity(StrEnum):
    """How to choose among the nodes that fit (``config.affinity``)."""

    FIRST = "First"
    """The first fitting node in name order."""
    RANDOM = "Random"
    """A uniformly random fitting node, drawn from the `random.Random` passed in."""
    DISTRIBUTE = "Distribute"
    """Spread: fewest siblings of the same workload, then the most free capacity."""
    FILL = "Fill"
    """Pack: most siblings, then the least free capacity (best fit)."""


class Reason(StrEnum):
    """Why a node was rejected for one replica. Declaration order = filter order.

    Each node gets exactly one reason (the first filter that rejects it), so the
    counts of a `dora why` explanation add up to the number of nodes.
    """

    NOT_READY = "NOT_READY"
    SCHEDULING_DISABLED = "SCHEDULING_DISABLED"
    NOT_ALLOWED = "NOT_ALLOWED"
    NODE_SELECTOR = "NODE_SELECTOR"
    GPU_MODEL = "GPU_MODEL"
    CPU_MODEL = "CPU_MODEL"
    GPU_CAPACITY = "GPU_CAPACITY"
    CPU_CAPACITY = "CPU_CAPACITY"
    MEMORY = "MEMORY"
    RESERVED = "RESERVED"
    """The node fits, but the room is held for the blocked head of the queue."""


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU of a node. ``index`` is the device id handed to Docker."""

    index: int
    model: str
    memory_mb: int | None = None


@dataclass(frozen=True, slots=True)
class NodeView:
    """What placement needs to know about a node (spec + latest report)."""

    name: str
    zone: str = ""
    ready: bool = True
    scheduling_disabled: bool = False
    allow: frozenset[str] = frozenset({CPU_WORKLOAD, GPU_WORKLOAD})
    cpu_model: str = ""
    cpu_ids: tuple[int, ...] = ()
    memory_bytes: int = 0
    gpus: tuple[GpuInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class Booking:
    """What one placed container holds on its node, exclusively.

    ``millicores`` are drawn from the node's shared CPU pool (see `dora.scheduler.placement`).
    ``workload`` lets Distribute/Fill count siblings; ``ends_at`` (start + maxRunTime)
    lets backfill know when the resources come back; ``None`` means "unknown".
    """

    node: str
    gpu_indices: tuple[int, ...] = ()
    cpu_ids: tuple[int, ...] = ()
    millicores: int = 0
    memory_bytes: int = 0
    workload: WorkloadId | None = None
    ends_at: float | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """The per-replica needs of one workload.

    A request with ``gpu_count > 0`` is a GPU workload (the node must allow
    ``GPUWorkload``), otherwise a CPU workload. ``None`` model tuples mean "All".
    At most one of ``cpu_count`` (whole CPUs) and ``cpu_millicores`` is expected;
    if both are set, ``cpu_count`` wins. Neither set: a GPU container gets CPUs pinned
    to its GPUs, a CPU container reserves no CPU (best effort).
    ``memory_bytes`` overrides the memory share computed from the node.
    """

    gpu_count: int = 0
    gpu_models: tuple[str, ...] | None = None
    cpu_count: int | None = None
    cpu_millicores: int | None = None
    cpu_models: tuple[str, ...] | None = None
    node_name: str | None = None
    affinity: Affinity = Affinity.FIRST
    memory_bytes: int | None = None

    @property
    def is_gpu(self) -> bool:
        """A GPU workload: needs ``GPUWorkload`` in the node's ``allow`` list."""
        return self.gpu_count > 0

    @property
    def whole_cpus(self) -> int | None:
        """Explicit whole-CPU count, or None when CPUs are not counted that way."""
        return self.cpu_count

    @property
    def millicores(self) -> int:
        """Millicores drawn from the shared pool (0 when CPUs are whole or absent)."""
        if self.cpu_count is not None or self.cpu_millicores is None:
            return 0
        return self.cpu_millicores

    @property
    def pins_cpus_to_gpus(self) -> bool:
        """A GPU container without an explicit CPU request gets its GPUs' aligned CPUs."""
        return self.gpu_count > 0 and self.cpu_count is None and self.cpu_millicores is None


@dataclass(frozen=True, slots=True)
class GangRequest:
    """All replicas of one workload that must be placed together or not at all."""

    workload: WorkloadId
    replicas: tuple[str, ...]
    request: Request
    priority: int = 0
    submitted_at: float = 0.0
    max_run_time_s: float | None = None

    def container_id(self, name: str) -> ContainerId:
        """The container's full id: the workload's zone and workspace plus its name."""
        return (self.workload[0], self.workload[1], name)


def parse_product_names(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``product_name`` → model tuple; ``All``/empty/None → None (any model).

    A plain string is one model and does filter (the original ignored it: a bug).
    """
    if value is None:
        return None
    if isinstance(value, str):
        stripped = value.strip()
        if stripped == "" or stripped.lower() in ("all", "pwm.all"):
            return None
        return (stripped,)
    models = tuple(v.strip() for v in value if v.strip())
    if not models or any(m.lower() in ("all", "pwm.all") for m in models):
        return None
    return models


def parse_cpu_count(value: int | str | None) -> tuple[int | None, int | None]:
    """``selectors.cpu.count`` → (whole CPUs, millicores); ``"500m"`` is millicores.

    Raises ValueError on anything else (validation should have caught it earlier).
    """
    if value is None:
        return None, None
    if isinstance(value, bool):
        raise ValueError(f"invalid cpu count {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid cpu count {value!r}")
        return value, None
    text = value.strip()
    if text.endswith("m") and text[:-1].isdigit():
        return None, int(text[:-1])
    if text.isdigit():
        return int(text), None
    raise ValueError(f"invalid cpu count {value!r}")


def parse_node_name(value: str | None) -> str | None:
    """``selectors.node.name`` → a node name, or None for All / pwm.all / empty."""
    if value is None:
        return None
    stripped = value.strip()
    if stripped == "" or stripped.lower() in ("all", "pwm.all"):
        return None
    return stripped
