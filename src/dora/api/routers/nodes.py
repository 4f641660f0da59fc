"""The node agents' channel: heartbeat report and assignment long-poll."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from dora.api.deps import AUTH_RESPONSES, CallerDep, Ctx
from dora.api.schemas import Assignments, ErrorOut, NodeReport, ReportOut
from dora.api.services import nodes

router = APIRouter(
    prefix="/v1/nodes",
    tags=["nodes"],
    responses={
        **AUTH_RESPONSES,
        400: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        409: {"model": ErrorOut},
    },
)

ZoneQ = Annotated[str | None, Query(description="the node's zone (default: the API's)")]


@router.post("/{name}/report", summary="Node heartbeat: inventory and container states")
async def report(
    ctx: Ctx,
    caller: CallerDep,
    name: str,
    body: NodeReport,
    zone: ZoneQ = None,
    x_dora_agent: Annotated[str, Header(description="the agent's random id")] = "",
) -> ReportOut:
    return await nodes.report(ctx, caller, zone or ctx.settings.zone, name, x_dora_agent, body)


@router.get("/{name}/assignments", summary="Containers the node must run (long-poll)")
async def assignments(
    ctx: Ctx,
    caller: CallerDep,
    name: str,
    zone: ZoneQ = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
    wait: Annotated[float, Query(ge=0, le=300, description="seconds to wait for a change")] = 0,
) -> Assignments:
    return await nodes.assignments(ctx, caller, zone or ctx.settings.zone, name, since, wait)
