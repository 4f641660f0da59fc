"""Clone a workspace: a new, empty workspace ``<source>.<name>``, and for the caller a
copy of the grants they already hold on the source, pointed at the new workspace.

The original system's clone could join a workspace that already existed (with other
people's data in it) and copied grants straight into the caller's User record: a way
to grant yourself roles. Here:

* RBAC: ``Workspace: Clone`` in (zone, source), the scope acted on;
* the new workspace must not exist, nor have workloads, volumes or containers left
  from an earlier workspace of that name, nor be named in another user's grants
  (409): cloning never joins anything or anyone;
* the caller gets copies of exactly the entries of their own ``spec.resources`` whose
  workspace is the source — read from the stored record, not from what the token saw
  — with the workspace replaced; entries on ``All`` or on other workspaces are not
  copied, no role is added or changed, and entries the caller already holds are not
  repeated. So the caller can do in the new workspace exactly what they could do in
  the source, and nothing anywhere else;
* the Workspace is written first, then the User record (compare-and-set, retried on
  a conflict). When the User write finally fails, the new workspace is removed again
  and the error says so (or says that it could not be removed, and what to do).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from dora.api.context import ApiContext
from dora.api.errors import ApiError, conflict, invalid, not_found, require_unicode
from dora.api.identity import GLOBAL, Caller
from dora.api.schemas import CloneOut, GrantOut
from dora.api.services.resources import CAS_RETRIES
from dora.api.services.scope import require, resolve_zone
from dora.model import KINDS
from dora.model.names import resource_name_problem
from dora.store import (
    AlreadyExists,
    Conflict,
    Event,
    Key,
    NewRecord,
    NotFound,
    Patch,
    Record,
    Write,
)

log = logging.getLogger("dora.api.clone")

LEFTOVER_KINDS = ("Workload", "Volume", "Container")
"""Kinds whose records, left in a deleted workspace, a clone of that name would reach."""


def cloned_name(source: str, name: str) -> str:
    return f"{source}.{name}"


def cloned_grants(
    resources: Sequence[Mapping[str, Any]], source: str, target: str
) -> list[dict[str, Any]]:
    """Copies of the entries of ``User.spec.resources`` whose workspace is `source`,
    with the workspace set to `target`; entries already present are left out. Pure."""
    held = [dict(entry) for entry in resources]
    added: list[dict[str, Any]] = []
    for entry in held:
        if entry.get("workspace") != source:
            continue
        copy = {**entry, "workspace": target}
        if copy not in held and copy not in added:
            added.append(copy)
    return added


def check_name(name: str) -> None:
    """400 naming field ``name`` unless `name` may name a workspace."""
    require_unicode(name, "name")
    problem = resource_name_problem("Workspace", name)
    if problem is not None:
        raise invalid(f"name: {problem}", field="name")


def check_target(source: str, name: str) -> str:
    """The new workspace's name ``<source>.<name>``, or 400 naming field ``name``."""
    target = cloned_name(source, name)
    problem = resource_name_problem("Workspace", target)
    if problem is not None:
        raise invalid(f"name: the new workspace {source}.{name} {problem}", field="name")
    return target


async def clone_workspace(
    ctx: ApiContext, caller: Caller, source: str, name: str, *, query_zone: str | None
) -> CloneOut:
    zone = resolve_zone(caller, ctx.settings.zone, query_zone)
    check_name(name)
    require(caller, KINDS["Workspace"], "Clone", zone, source)
    source_key = Key("Workspace", GLOBAL, GLOBAL, source)
    zone_key = Key("Zone", GLOBAL, GLOBAL, zone)
    known = {r.key: r for r in await ctx.store.get_many([source_key, zone_key])}
    if zone_key not in known:
        raise invalid(f"zone {zone!r} does not exist", field="zone")
    if source_key not in known:
        raise not_found(f"workspace {source!r} does not exist")
    target = check_target(source, name)
    target_key = Key("Workspace", GLOBAL, GLOBAL, target)
    if await ctx.store.get_many([target_key]):
        raise conflict(
            f"workspace {target!r} already exists; pick another name (a clone never "
            "joins an existing workspace)"
        )
    await _refuse_leftovers(ctx, caller, target)
    workspace = await _create_workspace(ctx, caller, target_key, source)
    try:
        added = await _add_grants(ctx, caller, source, target)
    except ApiError as exc:
        raise conflict(await _rolled_back(ctx, caller, workspace, exc.message)) from None
    except Exception as exc:
        log.exception("event=clone_grants_failed workspace=%s", target)
        reason = f"adding the grants failed ({type(exc).__name__})"
        message = await _rolled_back(ctx, caller, workspace, reason)
        raise ApiError(500, "internal", message) from None
    grants = [GrantOut(**{k: str(g.get(k, "")) for k in GrantOut.model_fields}) for g in added]
    return CloneOut(
        workspace=target,
        source=source,
        grants=grants,
        message=f"workspace {target} created from {source}; {len(grants)} grant"
        f"{'' if len(grants) == 1 else 's'} added to user {caller.name}",
    )


async def _refuse_leftovers(ctx: ApiContext, caller: Caller, target: str) -> None:
    """409 when the name is not really free: records left from a deleted workspace, or
    other users' grants naming it (they would share the new workspace)."""
    for kind in LEFTOVER_KINDS:
        left = await ctx.store.list_records(kind, workspace=target, limit=1)
        if left:
            raise conflict(
                f"workspace {target!r} still has {kind.lower()}s left from an earlier "
                "workspace of that name; pick another name, or ask an admin to remove them"
            )
    for user in await ctx.store.list_records("User", zone=GLOBAL, workspace=GLOBAL):
        if user.key.name != caller.name and any(
            isinstance(entry, Mapping) and entry.get("workspace") == target
            for entry in user.spec.get("resources") or []
        ):
            raise conflict(
                f"other users already hold grants on workspace {target!r}; pick another name"
            )


async def _create_workspace(ctx: ApiContext, caller: Caller, key: Key, source: str) -> Record:
    message = f"Workspace {key.name} cloned from {source} by {caller.name}"
    new = NewRecord(key=key, spec={}, owner=caller.name)
    event = Event(key, "Cloned", message, caller.name, ctx.clock())
    try:
        (record,) = await ctx.store.batch(
            [Write(key=key, new=new)], actor=caller.name, fence=None, events=[event]
        )
    except AlreadyExists:
        raise conflict(
            f"workspace {key.name!r} was created by someone else just now; pick another name"
        ) from None
    assert record is not None
    return record


async def _add_grants(
    ctx: ApiContext, caller: Caller, source: str, target: str
) -> list[dict[str, Any]]:
    """Append the copies to the caller's stored User record (compare-and-set). Each try
    re-reads the record, so a grant removed meanwhile is not copied."""
    key = Key("User", GLOBAL, GLOBAL, caller.name)
    for _ in range(CAS_RETRIES):
        try:
            current = await ctx.store.get(key)
        except NotFound:
            raise not_found(f"user {caller.name} no longer exists") from None
        resources = list(current.spec.get("resources") or [])
        added = cloned_grants(resources, source, target)
        if not added:
            return []
        spec = {**current.spec, "resources": [*resources, *added]}
        listed = ", ".join(f"{g.get('kind')}/{g.get('role')}" for g in added)
        message = f"grants copied from workspace {source} to {target} (clone): {listed}"
        write = Write(key=key, patch=Patch(spec=spec), expected_version=current.version)
        event = Event(key, "Granted", message, caller.name, ctx.clock())
        try:
            (record,) = await ctx.store.batch(
                [write], actor=caller.name, fence=None, events=[event]
            )
        except (Conflict, NotFound):
            continue
        assert record is not None
        ctx.identity.apply_record(key, record)  # this replica: at once; others: the feed
        return added
    raise conflict(f"user {caller.name}'s record kept changing while the grants were added")


async def _rolled_back(ctx: ApiContext, caller: Caller, workspace: Record, reason: str) -> str:
    """Remove the workspace this request created; the message saying how it ended."""
    name = workspace.key.name
    try:
        await ctx.store.delete(workspace.key, expected_version=workspace.version, actor=caller.name)
    except Exception as exc:
        log.warning("event=clone_rollback_failed workspace=%s error=%s", name, type(exc).__name__)
        return (
            f"{reason}; workspace {name} was created but could not be removed again "
            f"({type(exc).__name__}): delete it (dora delete ws {name}) before cloning again"
        )
    return f"{reason}; workspace {name} was removed again, nothing changed: try again"


__all__ = ["clone_workspace", "cloned_grants", "cloned_name"]
