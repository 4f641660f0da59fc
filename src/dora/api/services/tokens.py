"""Token issue, listing and revocation.

Anyone may list and revoke their own tokens. Creating a token for yourself needs
``Token: Create`` in the token's workspace; creating one for another user, listing or
revoking other users' tokens needs the verb cluster-wide (a grant with zone and
workspace ``All``), which in practice means the admin.
"""

from __future__ import annotations

import contextlib

from dora.api.bootstrap import token_record
from dora.api.context import ApiContext
from dora.api.errors import invalid, not_found, require_unicode
from dora.api.identity import GLOBAL, TOKEN_KIND, Caller, TokenInfo, token_key
from dora.api.schemas import TokenCreate, TokenCreated, TokenOut
from dora.auth import issue_token
from dora.store import Key, NotFound, Record


def _out(record: Record) -> TokenOut:
    spec = record.spec
    exp = spec.get("expires_at")
    return TokenOut(
        jti=record.key.name,
        user=str(spec.get("user", "")),
        workspace=str(spec.get("workspace", "")),
        id=str(spec.get("id", "")),
        created_at=record.created_at,
        expires_at=float(exp) if exp is not None else None,
        created_by=str(spec.get("created_by", "")),
    )


async def create_token(ctx: ApiContext, caller: Caller, body: TokenCreate) -> TokenCreated:
    require_unicode(body.model_dump())
    own = body.user == caller.name
    caller.require("Token", "Create", GLOBAL, body.workspace if own else GLOBAL)
    # Only the user must exist. The workspace is the token's default for requests that
    # name none, checked when it is used: the guide's `dora token create node node 1`
    # names a workspace `node` that nobody creates.
    try:
        await ctx.store.get(Key("User", GLOBAL, GLOBAL, body.user))
    except NotFound:
        raise invalid(f"user {body.user!r} does not exist", field="user") from None
    now = ctx.clock()
    token, claims = issue_token(
        ctx.settings.secret,
        user=body.user,
        workspace=body.workspace,
        token_id=body.id,
        now=now,
        ttl_s=body.expires_in_s,
    )
    record = await ctx.store.create(
        token_record(
            jti=claims.jti,
            user=body.user,
            workspace=body.workspace,
            token_id=body.id,
            created_by=caller.name,
            expires_at=claims.expires_at,
        ),
        actor=caller.name,
    )
    ctx.identity.apply_record(record.key, record)
    return TokenCreated(token=token, **_out(record).model_dump())


async def list_tokens(ctx: ApiContext, caller: Caller, user: str | None) -> list[TokenOut]:
    target = user or caller.name
    if target != caller.name:
        caller.require("Token", "List", GLOBAL, GLOBAL)
    records = await ctx.store.list_records(TOKEN_KIND, zone=GLOBAL, workspace=GLOBAL, parent=target)
    return [_out(r) for r in records]


async def revoke_token(ctx: ApiContext, caller: Caller, jti: str) -> TokenOut:
    """Revoke by jti; the token fails on this replica at once, elsewhere within the
    feed's latency."""
    try:
        record = await ctx.store.get(token_key(jti))
    except NotFound:
        raise not_found(f"no token with id {jti!r}") from None
    info = TokenInfo.from_record(record)
    if info.user != caller.name:
        caller.require("Token", "Revoke", GLOBAL, GLOBAL)
    with contextlib.suppress(NotFound):
        await ctx.store.delete(record.key, actor=caller.name)
    ctx.identity.apply_record(record.key, None)
    return _out(record)
