"""Per-user views: credits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dora.api.deps import AUTH_RESPONSES, CallerDep, Ctx
from dora.api.schemas import CreditsOut, ErrorOut
from dora.api.services import credits

router = APIRouter(prefix="/v1/users", tags=["users"], responses=AUTH_RESPONSES)


@router.get(
    "/me/credits",
    summary="Your weekly credit budget and what you spent, in one zone",
    description="Needs `User: Credits` in (zone, your default workspace). With `user`, "
    "another user's: that needs `User: Credits` on every workspace of the zone. "
    "Before the credit checker has written anything, the amounts are 0.",
    responses={400: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
async def my_credits(
    ctx: Ctx,
    caller: CallerDep,
    zone: Annotated[str | None, Query(max_length=253, description="zone (default: yours)")] = None,
    user: Annotated[str | None, Query(max_length=253, description="another user (admins)")] = None,
) -> CreditsOut:
    return await credits.user_credits(ctx, caller, query_zone=zone, user=user)
