"""Container verbs beyond get/describe/delete: Token (a single-use shell pass), Pause
and Resume.

**Token** — ``POST /v1/containers/{name}/token`` needs ``Container: Token`` in the
container's zone and workspace, and the container must exist. The reply is a
`dora.auth.container_tokens` token bound to the caller, the caller's API token and
this exact container (uid included). ``WS …/shell?token=`` redeems it once
(`redeem_token`) across the whole service: a one-shot claim in the store
(`Store.claim_once`), so a replay on another replica or worker fails too. The usual
ban and failure counting apply, and the shell route then checks ``Container: Shell``
again, as for a Bearer caller.

**Pause / Resume** — set the container record's ``desired`` to ``pause`` / ``run``;
its node agent runs ``docker pause`` / ``unpause``. The processes freeze in place and
the container **keeps its GPUs and CPUs** (unlike pausing a workload, which stops its
containers and frees them). The scheduler leaves such a container alone: it is live,
neither stopped nor draining. Refused (409) while the container or its workload is
being deleted, while the workload is paused, and — for pause — unless the container
is placed and running.
"""

from __future__ import annotations

import logging

from starlette.requests import HTTPConnection

from dora.api.context import ApiContext
from dora.api.deps import guarded
from dora.api.errors import conflict, forbidden, unauthorized
from dora.api.identity import Caller
from dora.api.schemas import ContainerTokenOut
from dora.api.services.resources import CAS_RETRIES, get_one, kind_info
from dora.auth import fingerprint
from dora.auth.container_tokens import (
    ContainerRef,
    InvalidContainerToken,
    issue_container_token,
    verify_container_token,
)
from dora.store import Conflict, Event, Key, NotFound, Patch, Record, Write
from dora.store.base import Desired

log = logging.getLogger("dora.api.containers")

CLAIM_MARGIN_S = 60.0
"""A redeemed token's claim outlives the token by this much, so a replica whose clock
runs behind the store's still finds it."""

# --------------------------------------------------------------------------- token


async def issue_token(
    ctx: ApiContext, caller: Caller, name: str, *, zone: str | None, workspace: str | None
) -> ContainerTokenOut:
    record = await get_one(
        ctx, caller, kind_info("Container"), name, zone=zone, workspace=workspace, verb="Token"
    )
    key = record.key
    token, claims = issue_container_token(
        ctx.settings.secret,
        user=caller.name,
        token_jti=caller.claims.jti,
        container=ContainerRef(key.zone, key.workspace, key.name, record.uid),
        now=ctx.clock(),
        ttl_s=ctx.settings.container_token_ttl_s,
    )
    log.info(
        "event=container_token user=%s container=%s/%s token=%s",
        caller.name,
        key.workspace,
        key.name,
        fingerprint(token),
    )
    return ContainerTokenOut(token=token, expires_at=claims.expires_at)


def binding_error(
    claims: ContainerRef, name: str, zone: str | None, workspace: str | None
) -> str | None:
    """Why a token bound to `claims` does not open the container the URL names."""
    wanted = (zone or claims.zone, workspace or claims.workspace, name)
    if wanted != (claims.zone, claims.workspace, claims.name):
        return (
            f"this container token opens {claims.workspace}/{claims.name} in zone "
            f"{claims.zone}, not {wanted[1]}/{wanted[2]} in zone {wanted[0]}"
        )
    return None


async def redeem_token(
    ctx: ApiContext,
    connection: HTTPConnection,
    token: str,
    name: str,
    *,
    zone: str | None,
    workspace: str | None,
) -> tuple[Caller, ContainerRef]:
    """The caller a container token stands for, and the container it opens. Counts
    failures per client address like any other authentication (401), refuses a
    token for another container (403) and a token used before (401)."""

    async def check() -> tuple[Caller, ContainerRef, str]:
        now = ctx.clock()
        try:
            claims = verify_container_token(ctx.settings.secret, token, now=now)
        except InvalidContainerToken as exc:
            raise unauthorized(f"invalid container token: {exc.reason}") from None
        wrong = binding_error(claims.container, name, zone, workspace)
        if wrong is not None:
            raise forbidden(wrong)
        # This process's memory answers a replay here at no cost; the store's one-shot
        # claim makes the token single-use across every replica and worker.
        if not ctx.container_tokens_used.redeem(
            claims.jti, claims.expires_at, now
        ) or not await ctx.store.claim_once(
            f"container-token/{claims.jti}", claims.expires_at - now + CLAIM_MARGIN_S
        ):
            raise unauthorized("invalid container token: already used (each opens one shell)")
        caller = await ctx.identity.delegated(
            claims.user, claims.token_jti, claims.container.workspace
        )
        return caller, claims.container, claims.token_jti

    caller, container, _ = await guarded(connection, ctx, check, lambda r: f"jti:{r[2]}")
    return caller, container


# --------------------------------------------------------------------------- pause


LIVE_FOR_PAUSE = ("running", "paused")


def pause_refusal(container: Record, workload: Record | None, paused: bool) -> str | None:
    """Why `container` may not be paused (or resumed) now; None when it may. Pure."""
    name = container.key.name
    if container.desired == "drain":
        return f"container {name} is being deleted"
    if workload is None:
        return f"workload {container.parent or '?'} of container {name} no longer exists"
    if workload.desired == "drain":
        return f"workload {workload.key.name} is being deleted"
    if workload.desired == "pause":
        return (
            f"workload {workload.key.name} is paused (its containers stop); resume the "
            f"workload instead: dora resume wk {workload.key.name}"
        )
    if not paused or container.desired == "pause":
        return None
    if not container.node:
        return f"container {name} is not placed on a node yet; there is nothing to pause"
    state = (container.observed or {}).get("state") or "not started yet"
    if state not in LIVE_FOR_PAUSE:
        return f"container {name} is {state}; only a running container can be paused"
    return None


async def _workload_of(ctx: ApiContext, container: Record) -> Record | None:
    if not container.parent:
        return None
    key = container.key
    try:
        return await ctx.store.get(Key("Workload", key.zone, key.workspace, container.parent))
    except NotFound:
        return None


async def set_paused(
    ctx: ApiContext,
    caller: Caller,
    name: str,
    *,
    paused: bool,
    zone: str | None,
    workspace: str | None,
) -> Record:
    """``desired`` = ``pause`` / ``run`` (compare-and-set, re-checked on a race), with
    a Paused / Resumed event on the container."""
    verb = "Pause" if paused else "Resume"
    record = await get_one(
        ctx, caller, kind_info("Container"), name, zone=zone, workspace=workspace, verb=verb
    )
    desired: Desired = "pause" if paused else "run"
    for _ in range(CAS_RETRIES):
        refusal = pause_refusal(record, await _workload_of(ctx, record), paused)
        if refusal is not None:
            raise conflict(refusal)
        if record.desired == desired:
            return record
        message = (
            f"container {name} paused: its processes are frozen, its GPUs and CPUs kept"
            if paused
            else f"container {name} resumed"
        )
        event = Event(
            record.key, "Paused" if paused else "Resumed", message, caller.name, ctx.clock()
        )
        write = Write(record.key, patch=Patch(desired=desired), expected_version=record.version)
        try:
            (updated,) = await ctx.store.batch(
                [write], actor=caller.name, fence=None, events=[event]
            )
        except Conflict:
            try:
                record = await ctx.store.get(record.key)
            except NotFound:
                raise conflict(f"container {name} was deleted meanwhile") from None
            continue
        assert updated is not None
        return updated
    raise conflict(f"container {name} is being changed by someone else right now; try again")
