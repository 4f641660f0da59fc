"""Request dependencies: the app context, the client address, the authenticated caller."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.types import Scope

from dora.api.context import ApiContext
from dora.api.errors import ApiError, unauthorized
from dora.api.identity import Caller
from dora.api.schemas import ErrorOut

T = TypeVar("T")

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing, invalid, expired or revoked token"},
    422: {"model": ErrorOut, "description": "Malformed request (body, query or path)"},
    429: {
        "model": ErrorOut,
        "description": "Rate limited, or this address is banned after failed logins",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before trying again",
                "schema": {"type": "integer"},
            }
        },
    },
}
"""Answers every route that takes `CallerDep` may give, for its OpenAPI declaration."""


async def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_context)]


def client_ip(request: HTTPConnection, ctx: ApiContext) -> str:
    """The client's address; forwarded headers count only from a trusted proxy."""
    return scope_client_ip(request.scope, ctx)


def scope_client_ip(scope: Scope, ctx: ApiContext) -> str:
    """`client_ip` from the ASGI scope itself (no connection object to build)."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if peer in ctx.settings.trusted_proxies:
        # The first of each header, as `Headers.get` would give, in one pass over the
        # raw list (this runs on every authenticated request).
        forwarded: str | None = None
        real: str | None = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for" and forwarded is None:
                forwarded = value.decode("latin-1")
            elif name == b"x-real-ip" and real is None:
                real = value.decode("latin-1")
        if forwarded:
            return forwarded.split(",")[0].strip() or peer
        if real:
            return real.strip()
    return peer


def too_many(message: str, retry_after: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(
        429,
        "rate_limited",
        f"{message}; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def bearer_token(request: HTTPConnection) -> str | None:
    return bearer_from_header(request.headers.get("authorization", ""))


def bearer_from_header(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header's value, else None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _refuse_banned(ctx: ApiContext, ip: str, now: float) -> None:
    banned_for = ctx.failed_auth.is_banned(ip, now)
    if banned_for:
        raise too_many("too many failed authentications from this address", banned_for)


def _refuse_over_rate(ctx: ApiContext, key: str, now: float) -> None:
    wait = ctx.rate_limiter.check(key, now)
    if wait:
        raise too_many("rate limit exceeded for this token", wait)


async def guarded(
    connection: HTTPConnection,
    ctx: ApiContext,
    check: Callable[[], Awaitable[T]],
    rate_key: Callable[[T], str],
) -> T:
    """Run the credential `check` behind the address's ban (each 401 it raises counts
    as a failed authentication), then rate-limit what it returns by `rate_key`."""
    now = ctx.clock()
    ip = client_ip(connection, ctx)
    _refuse_banned(ctx, ip, now)
    try:
        result = await check()
    except ApiError as exc:
        if exc.status == 401:
            ctx.metrics.auth_failures.inc()
            ctx.failed_auth.record_failure(ip, now)
        raise
    _refuse_over_rate(ctx, rate_key(result), now)
    return result


def admit(scope: Scope, ctx: ApiContext, rate_key: str) -> None:
    """`guarded`'s address ban and rate limit, for a caller whose credentials were
    checked on an earlier request (`dora.api.list_cache` remembers such decisions)."""
    now = ctx.clock()
    _refuse_banned(ctx, scope_client_ip(scope, ctx), now)
    _refuse_over_rate(ctx, rate_key, now)


def rate_key(caller: Caller) -> str:
    """What an authenticated caller's requests are rate-limited by: its token."""
    return f"jti:{caller.claims.jti}"


async def authenticate(connection: HTTPConnection, ctx: ApiContext, token: str | None) -> Caller:
    """Ban check, token check (counting failures per IP), then the rate limit."""

    async def check() -> Caller:
        if token is None:
            raise unauthorized("missing token: send 'Authorization: Bearer <token>'")
        return await ctx.identity.authenticate(token)

    return await guarded(connection, ctx, check, rate_key)


_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `dora token create`, or the admin token printed once at "
    "the first start",
)


async def current_caller(
    request: Request,
    ctx: Ctx,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Caller:
    # `_bearer` only declares the scheme in the OpenAPI document; the header is read
    # (and every failure counted) by `authenticate`.
    return await authenticate(request, ctx, bearer_token(request))


CallerDep = Annotated[Caller, Depends(current_caller)]
