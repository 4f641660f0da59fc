"""Store records ↔ the pure scheduler's plain types.

This is the only place that knows both the stored shapes (the model's spec dicts,
the agents' reports) and the placement/reconcile dataclasses.

What the scheduler writes into a placed Container's ``computed`` (the node agent's
contract, see ``dora.node``)::

    {"node": "node1", "gpus": [0, 1], "cpus": [0, 1, 2, 3], "millicores": None,
     "memory": 17179869184, "shm_size": None, "replica": 1,
     "volumes": [{"name": "dora.volume.ws.home", "workspace": "ws", "target": "/home",
                  "read_only": False, "storage_kind": "NFS", "endpoint": "nas",
                  "path": "/dorastorage/ws/home"}]}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeVar

from dora.model import LOCAL_STORAGE, duration_seconds
from dora.model.location import LOCAL_VOLUME_ROOT, volume_location
from dora.scheduler.reconcile import (
    ContainerState,
    ContainerView,
    Desired,
    RestartPolicy,
    WorkloadView,
    replica_index,
)
from dora.scheduler.types import (
    Affinity,
    Booking,
    GangRequest,
    GpuInfo,
    NodeView,
    Request,
    WorkloadId,
    parse_cpu_count,
    parse_node_name,
    parse_product_names,
)
from dora.store import Record

__all__ = ["LOCAL_VOLUME_ROOT"]  # re-exported: where `storage: Local` volumes live


def _dig(data: Mapping[str, Any] | None, *path: str) -> Any:
    value: Any = data or {}
    for part in path:
        # Plain dicts (every decoded record) first: an ABC isinstance check costs
        # more than the look-up itself.
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(part)
        else:
            return None
    return value


E = TypeVar("E", bound=StrEnum)


def _member(members: Mapping[str, E], kind: type[E], value: Any) -> E:
    """``kind(value)`` through a prebuilt table: an enum call costs more than the rest
    of a spec's parsing together. Anything not in the table goes to the call, which
    raises ValueError exactly as before."""
    found = members.get(value) if type(value) is str else None
    return found if found is not None else kind(value)


_AFFINITIES = {m.value: m for m in Affinity}
_POLICIES = {m.value: m for m in RestartPolicy}
_DESIRED = {m.value: m for m in Desired}


def is_ready(node: Record, now: float, ready_s: float) -> bool:
    """Reported within `ready_s` and wanted (desired run)."""
    last_seen = _dig(node.observed, "last_seen")
    return (
        node.desired == "run"
        and isinstance(last_seen, int | float)
        and now - float(last_seen) <= ready_s
    )


def node_view(node: Record, now: float, ready_s: float) -> NodeView:
    observed = node.observed or {}
    gpus = tuple(
        GpuInfo(
            index=int(g.get("index", i)),
            model=str(g.get("product_name", "")),
            memory_mb=int(g["memory_total_mb"]) if g.get("memory_total_mb") else None,
        )
        for i, g in enumerate(observed.get("gpus") or [])
    )
    return NodeView(
        name=node.key.name,
        zone=node.key.zone,
        ready=is_ready(node, now, ready_s),
        scheduling_disabled=node.spec.get("schedulingDisabled") is True,
        allow=frozenset(node.spec.get("allow") or ()),
        cpu_model=str(observed.get("cpu_model", "")),
        cpu_ids=tuple(range(int(observed.get("cpu_count") or 0))),
        memory_bytes=int(observed.get("memory_total") or 0),
        gpus=gpus,
    )


def max_run_time_s(spec: Mapping[str, Any]) -> float | None:
    text = _dig(spec, "config", "maxRunTime")
    return float(duration_seconds(text)) if isinstance(text, str) else None


def request_of(spec: Mapping[str, Any]) -> Request:
    """One replica's needs; a workload selecting neither CPU nor GPU gets one CPU."""
    gpu = _dig(spec, "selectors", "gpu") or {}
    cpu = _dig(spec, "selectors", "cpu") or {}
    gpu_count = int(gpu.get("count") or 0)
    cpu_count, millicores = parse_cpu_count(cpu.get("count"))
    if gpu_count == 0 and cpu_count is None and millicores is None:
        cpu_count = 1
    return Request(
        gpu_count=gpu_count,
        gpu_models=parse_product_names(gpu.get("product_name")) if gpu_count else None,
        cpu_count=cpu_count,
        cpu_millicores=millicores,
        cpu_models=parse_product_names(cpu.get("product_name")) if cpu else None,
        node_name=parse_node_name(_dig(spec, "selectors", "node", "name")),
        affinity=_member(_AFFINITIES, Affinity, _dig(spec, "config", "affinity") or "First"),
    )


@dataclass(frozen=True, slots=True)
class SpecFacts:
    """What placement and reconcile read from a workload's spec, parsed once."""

    request: Request
    replicas: int
    restart_policy: RestartPolicy
    max_run_time_s: float | None
    priority: int


_FACTS: dict[int, tuple[Mapping[str, Any], SpecFacts]] = {}
_FACTS_LIMIT = 65_536


def spec_facts(spec: Mapping[str, Any]) -> SpecFacts:
    """`SpecFacts` of ``spec``, memoised by the dict's identity (records are read-only;
    a workload's containers, and its records across status writes, share one spec
    dict, so each spec is parsed once, not once per container per pass). The memo
    keeps the dict alive, so an id is never reused while its entry exists."""
    entry = _FACTS.get(id(spec))
    if entry is not None and entry[0] is spec:
        return entry[1]
    facts = SpecFacts(
        request=request_of(spec),
        replicas=replicas_of(spec),
        restart_policy=_member(
            _POLICIES, RestartPolicy, _dig(spec, "config", "restartPolicy") or "Never"
        ),
        max_run_time_s=max_run_time_s(spec),
        priority=int(spec.get("priority") or 0),
    )
    if len(_FACTS) >= _FACTS_LIMIT:
        _FACTS.clear()
    _FACTS[id(spec)] = (spec, facts)
    return facts


def workload_id(record: Record) -> WorkloadId:
    return (record.key.zone, record.key.workspace, record.key.name)


def replicas_of(spec: Mapping[str, Any]) -> int:
    count = _dig(spec, "replica", "count")
    return int(count) if isinstance(count, int) else 1


def workload_view(record: Record) -> WorkloadView:
    facts = spec_facts(record.spec)
    started = (record.computed or {}).get("started_at")
    return WorkloadView(
        name=record.key.name,
        desired=_member(_DESIRED, Desired, record.desired),
        replicas=facts.replicas,
        spec_hash=record.spec_hash,
        restart_policy=facts.restart_policy,
        max_run_time_s=facts.max_run_time_s,
        started_at=float(started) if isinstance(started, int | float) else None,
    )


def container_view(record: Record) -> ContainerView:
    """A container as reconcile sees it: a released booking is no booking, and a
    container the scheduler marked lost counts as failed."""
    observed = record.observed or {}
    computed = record.computed or {}
    started = observed.get("started_at")
    finished = observed.get("finished_at")
    exit_code = observed.get("exit_code")
    recreations = computed.get("recreations")
    state = ContainerState.parse(observed.get("state"))
    if computed.get("lost"):
        state = ContainerState.FAILED
    view = ContainerView(
        name=record.key.name,
        spec_hash=record.spec_hash,
        desired=_member(_DESIRED, Desired, record.desired),
        state=state,
        exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        node=None if computed.get("released") else record.node or None,
        started_at=float(started) if isinstance(started, int | float) else None,
        recreations=recreations if isinstance(recreations, int) and recreations > 0 else 0,
    )
    if not view.stopped:
        return view
    # A failed start has no finish time: the report that said so is when it stopped.
    stopped_at = float(finished) if isinstance(finished, int | float) else record.updated_at
    return replace(view, stopped_at=stopped_at)


def booking_of(container: Record) -> Booking | None:
    """The resources a placed container holds (None when it holds nothing)."""
    computed = container.computed or {}
    if not container.node or computed.get("released"):
        return None
    started = (container.observed or {}).get("started_at")
    limit = spec_facts(container.spec).max_run_time_s
    ends_at = (
        float(started) + limit if isinstance(started, int | float) and limit is not None else None
    )
    return Booking(
        node=container.node,
        gpu_indices=tuple(map(int, computed.get("gpus") or ())),
        cpu_ids=tuple(map(int, computed.get("cpus") or ())),
        millicores=int(computed.get("millicores") or 0),
        memory_bytes=int(computed.get("memory") or 0),
        workload=(container.key.zone, container.key.workspace, container.parent),
        ends_at=ends_at,
    )


def gang_of(workload: Record, names: tuple[str, ...]) -> GangRequest:
    facts = spec_facts(workload.spec)
    return GangRequest(
        workload=workload_id(workload),
        replicas=names,
        request=facts.request,
        priority=facts.priority,
        submitted_at=workload.created_at,
        max_run_time_s=facts.max_run_time_s,
    )


def missing_volume(
    spec: Mapping[str, Any],
    workspace: str,
    volumes: Mapping[tuple[str, str], Record],
    storages: Mapping[str, Record],
) -> str | None:
    """Why `spec`'s volumes cannot be mounted now (a Volume, or its Storage, does not
    exist: deleted since the apply), or None. A replica is never placed with such a
    volume: it would silently get an empty folder instead of the data."""
    for mount in spec.get("volumes") or []:
        ws = str(mount.get("workspace") or workspace)
        name = str(mount["name"])
        volume = volumes.get((ws, name))
        if volume is None:
            return f"volume {ws}/{name} does not exist"
        storage = str((volume.spec or {}).get("storage") or LOCAL_STORAGE)
        if storage != LOCAL_STORAGE and storage not in storages:
            return f"storage {storage} of volume {ws}/{name} does not exist"
    return None


def resolve_volumes(
    spec: Mapping[str, Any],
    workspace: str,
    volumes: Mapping[tuple[str, str], Record],
    storages: Mapping[str, Record],
) -> list[dict[str, Any]]:
    """Each volume mount of `spec` with where its data lives (for the node agent)."""
    resolved = []
    for mount in spec.get("volumes") or []:
        ws = str(mount.get("workspace") or workspace)
        name = str(mount["name"])
        volume = volumes.get((ws, name))
        vspec = volume.spec if volume else {}
        storage = storages.get(str(vspec.get("storage") or "Local"))
        where = volume_location(ws, name, vspec, storage.spec if storage else None)
        read_only = mount.get("readOnly")
        resolved.append(
            {
                "name": f"dora.volume.{ws}.{name}",
                "workspace": ws,
                "target": str(mount.get("target") or f"/{name}"),
                "read_only": bool(read_only)
                if read_only is not None
                else vspec.get("policy") == "readonly",
                "storage_kind": where.kind,
                "endpoint": where.endpoint,
                "path": where.path,
            }
        )
    return resolved


def computed_of(
    booking: Booking,
    spec: Mapping[str, Any],
    workload: str,
    container: str,
    volumes: list[dict[str, Any]],
) -> dict[str, Any]:
    """A placed container's ``computed`` (see the module docstring); ``spec`` is the
    container's (its workload's), ``workload`` and ``container`` are names."""
    shm = _dig(spec, "config", "shmSize")
    return {
        "node": booking.node,
        "gpus": list(booking.gpu_indices),
        "cpus": list(booking.cpu_ids),
        "millicores": booking.millicores or None,
        "memory": booking.memory_bytes or None,
        "shm_size": int(shm) if isinstance(shm, int) else None,
        "replica": replica_index(workload, container),
        "volumes": volumes,
    }
