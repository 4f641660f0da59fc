"""API tokens: create (shown once), list (never the token itself), revoke."""

from __future__ import annotations

from fastapi import APIRouter

from dora.api.deps import AUTH_RESPONSES, CallerDep, Ctx
from dora.api.schemas import ErrorOut, TokenCreate, TokenCreated, TokenList, TokenOut
from dora.api.services import tokens

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], responses=AUTH_RESPONSES)


@router.post(
    "",
    status_code=201,
    summary="Create a token for a user (printed once)",
    responses={400: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)
async def create(ctx: Ctx, caller: CallerDep, body: TokenCreate) -> TokenCreated:
    return await tokens.create_token(ctx, caller, body)


@router.get(
    "", summary="List a user's tokens (yours by default)", responses={403: {"model": ErrorOut}}
)
async def list_(ctx: Ctx, caller: CallerDep, user: str | None = None) -> TokenList:
    return TokenList(items=await tokens.list_tokens(ctx, caller, user))


@router.delete(
    "/{jti}",
    summary="Revoke a token by its id",
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
async def revoke(ctx: Ctx, caller: CallerDep, jti: str) -> TokenOut:
    return await tokens.revoke_token(ctx, caller, jti)
