"""CPU and GPU: read-only views computed from node reports and container bookings."""

from __future__ import annotations

from typing import Any

from dora.api.context import ApiContext
from dora.api.errors import forbidden
from dora.api.identity import Caller
from dora.api.schemas import ResourceOut
from dora.api.services.scope import read_zones, require
from dora.api.services.views import READY, node_status
from dora.auth import ALL
from dora.model import KindInfo
from dora.store import Record


def _booked(containers: list[Record], field: str) -> set[int]:
    booked: set[int] = set()
    for c in containers:
        if c.desired == "drain" and (c.observed or {}).get("state") in ("exited", "deleted"):
            continue
        for value in (c.computed or {}).get(field) or []:
            if isinstance(value, int):
                booked.add(value)
    return booked


def _row(kind: str, node: Record, name: str, spec: dict[str, Any], now: float) -> ResourceOut:
    return ResourceOut(
        kind=kind,
        name=name,
        zone=node.key.zone,
        workspace="",
        spec=spec,
        desired=node.desired,
        status=None,
        version=node.version,
        uid=node.uid,
        owner=node.owner,
        node=node.key.name,
        created_at=node.created_at,
        updated_at=now,
    )


def gpu_rows(
    nodes: list[Record],
    containers_by_node: dict[str, list[Record]],
    *,
    now: float,
    ready_s: float,
) -> list[ResourceOut]:
    rows = []
    for node in nodes:
        observed = node.observed or {}
        booked = _booked(containers_by_node.get(node.key.name, []), "gpus")
        allowed = "GPUWorkload" in (node.spec.get("allow") or [])
        ready = node_status(node, now=now, ready_s=ready_s).startswith(READY)
        for gpu in observed.get("gpus") or []:
            index = int(gpu.get("index", 0))
            spec = dict(gpu)
            spec.update(node=node.key.name, booked=index in booked, allowed=allowed, ready=ready)
            rows.append(_row("GPU", node, f"{node.key.name}:{index}", spec, now))
    return rows


def cpu_rows(
    nodes: list[Record],
    containers_by_node: dict[str, list[Record]],
    *,
    now: float,
    ready_s: float,
) -> list[ResourceOut]:
    rows = []
    for node in nodes:
        if not node_status(node, now=now, ready_s=ready_s).startswith(READY):
            continue
        observed = node.observed or {}
        booked = _booked(containers_by_node.get(node.key.name, []), "cpus")
        loads = observed.get("cpu_load") or []
        allowed = "CPUWorkload" in (node.spec.get("allow") or [])
        for index in range(int(observed.get("cpu_count") or 0)):
            spec = {
                "node": node.key.name,
                "index": index,
                "product_name": observed.get("cpu_model", ""),
                "load": loads[index] if index < len(loads) else None,
                "booked": index in booked,
                "allowed": allowed,
            }
            rows.append(_row("CPU", node, f"{node.key.name}:{index}", spec, now))
    return rows


async def list_view(
    ctx: ApiContext, caller: Caller, info: KindInfo, zone: str | None
) -> list[ResourceOut]:
    """Rows of the CPU or GPU view of one zone (or every zone with ``All``)."""
    chosen = zone or caller.user.default_zone or ctx.settings.zone
    zone_filter = None if chosen == ALL else chosen
    zones: list[str] = [ALL]  # which zones' nodes the caller may see
    if zone_filter is None:
        zones = read_zones(caller, info, "Get") or []
        if not zones:
            raise forbidden(f"user {caller.name} may not Get {info.name} anywhere")
    else:
        require(caller, info, "Get", zone_filter, "")
    nodes = await ctx.store.list_records("Node", zone=zone_filter)
    if ALL not in zones:
        nodes = [n for n in nodes if n.key.zone in zones]
    by_node = {
        n.key.name: await ctx.store.list_records("Container", zone=n.key.zone, node=n.key.name)
        for n in nodes
    }
    rows = gpu_rows if info.name == "GPU" else cpu_rows
    return rows(nodes, by_node, now=ctx.clock(), ready_s=ctx.settings.node_ready_s)
