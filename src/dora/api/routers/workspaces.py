"""Workspace operations beyond apply/delete: clone."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from dora.api.deps import AUTH_RESPONSES, CallerDep, Ctx
from dora.api.schemas import CloneIn, CloneOut, ErrorOut
from dora.api.services import clone

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"], responses=AUTH_RESPONSES)


@router.post(
    "/{src}/clone",
    status_code=201,
    summary="Clone a workspace: a new one, <src>.<name>, with your grants on src copied",
    description="Needs `Workspace: Clone` on (zone, src). The new workspace must not "
    "exist (409). You get copies of exactly the grants you hold whose workspace is src "
    "(not those on All, no new roles), pointed at the new workspace. If your user "
    "record cannot be updated, the new workspace is removed again and the error says so.",
    responses={
        400: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        409: {"model": ErrorOut},
    },
)
async def clone_workspace(
    ctx: Ctx,
    caller: CallerDep,
    src: Annotated[str, Path(description="the workspace to clone", examples=["amedeo.setti"])],
    body: CloneIn,
    zone: Annotated[
        str | None, Query(max_length=253, description="zone the Clone right is checked in")
    ] = None,
) -> CloneOut:
    return await clone.clone_workspace(ctx, caller, src, body.name, query_zone=zone)
