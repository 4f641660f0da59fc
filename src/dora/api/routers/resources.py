"""Generic resource routes: apply, list, describe, delete, events, versions, pause.

`{kind}` accepts a kind's name, plural or CLI alias in any case (``wk``, ``nodes``).
``zone`` and ``workspace`` default to the caller's; ``zone=All`` and ``all=true``
widen a listing to every zone / workspace the caller may read.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

from dora.api.deps import AUTH_RESPONSES, CallerDep, Ctx
from dora.api.errors import ApiError
from dora.api.schemas import (
    ApplyBatchOut,
    ApplyItem,
    ApplyResult,
    DeleteResult,
    ErrorOut,
    EventList,
    ResourceList,
    ResourceOut,
    VersionList,
    VersionOut,
)
from dora.api.services import hardware, resources
from dora.api.services.views import event_out, record_out

router = APIRouter(
    prefix="/v1",
    tags=["resources"],
    responses={
        **AUTH_RESPONSES,
        400: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        409: {"model": ErrorOut},
    },
)

KindP = Annotated[
    str,
    Path(
        description="a kind's name, plural or CLI alias, in any case (Workload, wk, nodes)",
        examples=["workload", "wk", "container", "volume", "node", "gpu", "cpu", "storage"],
    ),
]
NameP = Annotated[str, Path(description="the resource's name", examples=["node1", "home"])]
ZoneQ = Annotated[str | None, Query(max_length=253, description="zone (default: yours)")]
WorkspaceQ = Annotated[str | None, Query(max_length=253, description="workspace (default: yours)")]
Document = Annotated[dict[str, Any], Body(description="one resource document, as JSON")]
MAX_BATCH = 500


@router.post("/apply", summary="Create or update one resource")
async def apply(
    ctx: Ctx, caller: CallerDep, doc: Document, zone: ZoneQ = None, workspace: WorkspaceQ = None
) -> ApplyResult:
    return await resources.apply(ctx, caller, doc, query_zone=zone, query_workspace=workspace)


@router.post(
    "/apply-many",
    summary="Apply several documents; each succeeds or fails on its own",
    description="The reply lists every document's outcome in order. Nothing is applied "
    "silently: a document that fails is reported with its field and reason.",
)
async def apply_many(
    ctx: Ctx,
    caller: CallerDep,
    docs: Annotated[list[dict[str, Any]], Body(max_length=MAX_BATCH)],
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
) -> ApplyBatchOut:
    items = []
    for index, doc in enumerate(docs, start=1):
        try:
            result = await resources.apply(
                ctx, caller, doc, query_zone=zone, query_workspace=workspace, index=index
            )
            items.append(ApplyItem(index=index, ok=True, result=result))
        except ApiError as exc:
            items.append(ApplyItem(index=index, ok=False, error=ErrorOut(**exc.body())))
    return ApplyBatchOut(items=items)


@router.get("/resources/{kind}", summary="List resources of a kind")
async def list_(
    ctx: Ctx,
    caller: CallerDep,
    kind: KindP,
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
    all: Annotated[bool, Query(description="every workspace you may read")] = False,
) -> ResourceList:
    info = resources.kind_info(kind)
    now, ready_s = ctx.clock(), ctx.settings.node_ready_s
    if info.readonly:
        return ResourceList(items=await hardware.list_view(ctx, caller, info, zone))
    records = await resources.list_resources(
        ctx, caller, info, zone=zone, workspace=workspace, all_workspaces=all
    )
    return ResourceList(items=[record_out(r, now=now, ready_s=ready_s) for r in records])


@router.get("/resources/{kind}/{name}", summary="Describe one resource (all four parts)")
async def describe(
    ctx: Ctx,
    caller: CallerDep,
    kind: KindP,
    name: NameP,
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
) -> ResourceOut:
    info = resources.kind_info(kind)
    record = await resources.get_one(ctx, caller, info, name, zone=zone, workspace=workspace)
    return record_out(record, now=ctx.clock(), ready_s=ctx.settings.node_ready_s)


@router.delete("/resources/{kind}/{name}", summary="Delete (workloads: drain, then remove)")
async def delete(
    ctx: Ctx,
    caller: CallerDep,
    kind: KindP,
    name: NameP,
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
    cascade: Annotated[bool, Query(description="also delete what depends on it")] = False,
) -> DeleteResult:
    info = resources.kind_info(kind)
    return await resources.delete(
        ctx, caller, info, name, zone=zone, workspace=workspace, cascade=cascade
    )


@router.get("/resources/{kind}/{name}/events", summary="Recent events of a resource")
async def events(
    ctx: Ctx,
    caller: CallerDep,
    kind: KindP,
    name: NameP,
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> EventList:
    info = resources.kind_info(kind)
    record = await resources.get_one(
        ctx, caller, info, name, zone=zone, workspace=workspace, verb="Event"
    )
    return EventList(items=[event_out(e) for e in await ctx.store.events(record.key, limit=limit)])


@router.get("/resources/{kind}/{name}/versions", summary="Spec versions of a resource")
async def versions(
    ctx: Ctx,
    caller: CallerDep,
    kind: KindP,
    name: NameP,
    zone: ZoneQ = None,
    workspace: WorkspaceQ = None,
) -> VersionList:
    info = resources.kind_info(kind)
    record = await resources.get_one(
        ctx, caller, info, name, zone=zone, workspace=workspace, verb="Version"
    )
    return VersionList(
        items=[
            VersionOut(number=v.number, spec=v.spec, spec_hash=v.spec_hash, actor=v.actor, at=v.at)
            for v in await ctx.store.spec_versions(record.key)
        ]
    )


@router.post("/workloads/{name}/pause", summary="Pause a workload (its containers stop)")
async def pause(
    ctx: Ctx, caller: CallerDep, name: str, zone: ZoneQ = None, workspace: WorkspaceQ = None
) -> ResourceOut:
    record = await resources.set_paused(
        ctx, caller, name, paused=True, zone=zone, workspace=workspace
    )
    return record_out(record, now=ctx.clock(), ready_s=ctx.settings.node_ready_s)


@router.post("/workloads/{name}/resume", summary="Resume a paused workload")
async def resume(
    ctx: Ctx, caller: CallerDep, name: str, zone: ZoneQ = None, workspace: WorkspaceQ = None
) -> ResourceOut:
    record = await resources.set_paused(
        ctx, caller, name, paused=False, zone=zone, workspace=workspace
    )
    return record_out(record, now=ctx.clock(), ready_s=ctx.settings.node_ready_s)
