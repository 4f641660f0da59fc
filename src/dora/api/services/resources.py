"""Resource operations behind the HTTP routes: apply, delete, get, list, describe,
events, versions, pause and resume. Routers parse and call these; these authorise on
the scope actually acted on, validate, and talk to the store."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dora.api.context import ApiContext
from dora.api.errors import ApiError, conflict, forbidden, invalid, not_found, require_unicode
from dora.api.identity import GLOBAL, TOKEN_KIND, Caller
from dora.api.schemas import ApplyResult, ApplyStatus, DeleteResult
from dora.api.services.scope import ALL_ZONES, Scope, require, resolve_scope, zone_level
from dora.auth import ALL, in_scopes, visible_scopes
from dora.model import KINDS, DocumentError, KindInfo, Resource, parse_document, resolve_kind
from dora.model.errors import UnknownKindError
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
    spec_hash,
)

CAS_RETRIES = 8
"""Compare-and-set retries before a write gives up with 409 (only under heavy races)."""


def kind_info(text: str) -> KindInfo:
    try:
        return resolve_kind(text)
    except UnknownKindError as exc:
        raise not_found(str(exc)) from None


def document_error(exc: DocumentError) -> ApiError:
    first = exc.issues[0]
    details = [i.as_dict() for i in exc.issues]
    message = "; ".join(f"{i.path}: {i.message}" if i.path else i.message for i in exc.issues)
    return ApiError(400, "invalid", message, field=first.path or None, details=details)


def parse(doc: Any, index: int = 1) -> Resource:
    """Validate a JSON document; `index` is its 1-based position in the request."""
    require_unicode(doc)
    try:
        return parse_document(doc, index=index - 1, source="request")
    except DocumentError as exc:
        raise document_error(exc) from None


# --------------------------------------------------------------------------- apply


async def apply(
    ctx: ApiContext,
    caller: Caller,
    doc: Any,
    *,
    query_zone: str | None = None,
    query_workspace: str | None = None,
    index: int = 1,
) -> ApplyResult:
    resource = parse(doc, index)
    info = KINDS[resource.kind]
    if resource.kind == "Container":
        raise invalid(
            "containers are made by the scheduler from a Workload; apply the Workload instead",
            field="kind",
        )
    scope = resolve_scope(
        info,
        caller,
        ctx.settings.zone,
        doc_zone=resource.zone,
        doc_workspace=resource.workspace,
        query_zone=query_zone,
        query_workspace=query_workspace,
    )
    caller.require(resource.kind, "Apply", scope.zone, scope.workspace)
    key = Key(resource.kind, scope.zone, scope.workspace, resource.name)
    # One read for the record and the zone and workspace it lives in.
    wanted = [key, *_scope_keys(info, scope)]
    known = {r.key: r for r in await ctx.store.get_many(wanted)}
    await check_dependencies(ctx, caller, resource, scope, known=known)
    spec = resource.spec_dict()
    meta = dict(resource.meta)
    existing = known.get(key)
    for _ in range(CAS_RETRIES):
        try:
            return await _apply_once(ctx, caller, key, spec, meta, existing)
        except (Conflict, AlreadyExists):
            existing = next(iter(await ctx.store.get_many([key])), None)
    raise conflict(f"{key} is being changed by someone else right now; apply again")


def _scope_keys(info: KindInfo, scope: Scope) -> list[Key]:
    keys = []
    if info.zoned:
        keys.append(Key("Zone", GLOBAL, GLOBAL, scope.zone))
    if info.workspaced:
        keys.append(Key("Workspace", GLOBAL, GLOBAL, scope.workspace))
    return keys


async def _apply_once(
    ctx: ApiContext,
    caller: Caller,
    key: Key,
    spec: dict[str, Any],
    meta: dict[str, Any],
    existing: Record | None,
) -> ApplyResult:
    """Create or update `key` from what was read (`existing`); the record and its event
    are written in one transaction. Raises Conflict / AlreadyExists on a race."""
    if existing is None:
        message = f"{key.kind} {key.name} created"
        new = NewRecord(key=key, spec=spec, meta=meta, owner=caller.name)
        record = await _write_with_event(ctx, caller, Write(key=key, new=new), "Created", message)
        return _result("created", record, message)
    if existing.desired == "drain":
        raise conflict(
            f"{key.kind} {key.name} is being deleted; wait until it is gone, then apply again"
        )
    status = apply_status(existing, spec, meta)
    if status == "unchanged":
        return _result(status, existing, f"{key.kind} {key.name} unchanged")
    if status == "scaled":
        before, after = _replicas(existing.spec), _replicas(spec)
        reason, message = (
            "Scaled",
            f"{key.kind} {key.name} scaled from {before} to {after} replicas",
        )
    else:
        reason, message = "Updated", f"{key.kind} {key.name} updated"
    write = Write(key=key, patch=Patch(spec=spec, meta=meta), expected_version=existing.version)
    record = await _write_with_event(ctx, caller, write, reason, message)
    return _result(status, record, message)


async def _write_with_event(
    ctx: ApiContext, caller: Caller, write: Write, reason: str, message: str
) -> Record:
    event = Event(write.key, reason, message, caller.name, ctx.clock())
    (record,) = await ctx.store.batch([write], actor=caller.name, fence=None, events=[event])
    assert record is not None
    # A User or Role changed here counts on this replica's next request, not only once
    # its change feed follower reads it (other replicas: the feed).
    ctx.identity.apply_record(record.key, record)
    return record


def _replicas(spec: dict[str, Any]) -> Any:
    replica = spec.get("replica")
    return replica.get("count") if isinstance(replica, dict) else None


def apply_status(existing: Record, spec: dict[str, Any], meta: dict[str, Any]) -> ApplyStatus:
    """created / updated / scaled / unchanged, judged against the stored record."""
    if spec == existing.spec and meta == existing.meta:
        return "unchanged"
    if spec_hash(spec) == existing.spec_hash and _replicas(spec) != _replicas(existing.spec):
        return "scaled"
    return "updated"


def _result(status: ApplyStatus, record: Record, message: str) -> ApplyResult:
    key = record.key
    return ApplyResult(
        status=status,
        kind=key.kind,
        name=key.name,
        zone=key.zone,
        workspace=key.workspace,
        version=record.version,
        message=message,
    )


async def _event(ctx: ApiContext, key: Key, reason: str, message: str, actor: str) -> None:
    await ctx.store.add_event(Event(key, reason, message, actor, ctx.clock()))


async def _exists(ctx: ApiContext, key: Key, known: Mapping[Key, Record] | None = None) -> bool:
    if known is not None and key in known:
        return True
    try:
        await ctx.store.get(key)
    except NotFound:
        return False
    return True


async def check_dependencies(
    ctx: ApiContext,
    caller: Caller,
    resource: Resource,
    scope: Scope,
    *,
    known: Mapping[Key, Record] | None = None,
) -> None:
    """Refuse documents that point at things that do not exist (or are not theirs).
    `known`: records already read (their existence needs no second read)."""
    info = KINDS[resource.kind]
    if info.zoned and not await _exists(ctx, Key("Zone", GLOBAL, GLOBAL, scope.zone), known):
        raise invalid(
            f"zone {scope.zone!r} does not exist; apply a Zone named {scope.zone!r} first",
            field="metadata.zone",
        )
    if info.workspaced and not await _exists(
        ctx, Key("Workspace", GLOBAL, GLOBAL, scope.workspace), known
    ):
        raise invalid(
            f"workspace {scope.workspace!r} does not exist; apply a Workspace named "
            f"{scope.workspace!r} first",
            field="metadata.workspace",
        )
    spec = resource.spec_dict()
    if resource.kind == "Volume":
        if spec.get("localPath") and not caller.allowed("Storage", "Apply", scope.zone, GLOBAL):
            # A path on the nodes' disks is host access: only storage admins choose one.
            raise forbidden(
                f"user {caller.name} may not set spec.localPath (it needs the right to "
                f"Apply Storage in zone {scope.zone}); leave it out to use the storage's path"
            )
        storage = spec.get("storage")
        if (
            storage
            and storage != "Local"
            and not await _exists(ctx, Key("Storage", scope.zone, GLOBAL, str(storage)))
        ):
            raise invalid(
                f"storage {storage!r} does not exist in zone {scope.zone!r}",
                field="spec.storage",
            )
    if resource.kind == "Workload":
        await _check_workload_refs(ctx, caller, spec, scope)


async def _check_workload_refs(
    ctx: ApiContext, caller: Caller, spec: dict[str, Any], scope: Scope
) -> None:
    node = ((spec.get("selectors") or {}).get("node") or {}).get("name")
    if (
        node
        and node != "All"
        and not await _exists(ctx, Key("Node", scope.zone, GLOBAL, str(node)))
    ):
        raise invalid(
            f"node {node!r} does not exist in zone {scope.zone!r}",
            field="spec.selectors.node.name",
        )
    for i, volume in enumerate(spec.get("volumes") or []):
        workspace = str(volume.get("workspace") or scope.workspace)
        name = str(volume.get("name"))
        # Mounting a volume is using it: check it in the volume's own workspace.
        if not caller.allowed("Volume", "Use", scope.zone, workspace):
            raise forbidden(
                f"user {caller.name} may not Use volumes in workspace {workspace} "
                f"(spec.volumes[{i}])"
            )
        if not await _exists(ctx, Key("Volume", scope.zone, workspace, name)):
            raise invalid(
                f"volume {name!r} does not exist in workspace {workspace!r}",
                field=f"spec.volumes[{i}].name",
            )


# --------------------------------------------------------------------------- read


@dataclass(frozen=True)
class ListScope:
    """What one listing reads: the store's filters ("" for a kind without zones or
    workspaces, None for every one) and, when a filter is None, the (zone, workspace)
    scopes the caller may read (the records outside them are dropped)."""

    zone: str | None
    workspace: str | None
    scopes: tuple[tuple[str, str], ...] | None


def list_scope(
    ctx: ApiContext,
    caller: Caller,
    info: KindInfo,
    zone: str | None,
    workspace: str | None,
    all_workspaces: bool,
) -> ListScope:
    """The scope of a listing, after the caller's Get permission is checked (403)."""
    zone_filter: str | None = ""
    if info.zoned:
        chosen = zone or caller.user.default_zone or ctx.settings.zone
        zone_filter = None if chosen == ALL_ZONES else chosen
    ws_filter: str | None = ""
    if info.workspaced:
        ws_filter = None if all_workspaces else (workspace or caller.default_workspace())
    if zone_filter is not None and ws_filter is not None:
        require(caller, info, "Get", zone_filter, ws_filter)
        return ListScope(zone_filter, ws_filter, None)
    scopes = visible_scopes(caller.user.grants, caller.roles, info.name, "Get")
    if zone_level(info):
        scopes = [(z, ALL) for z, _ in scopes]  # any workspace's grant reads the zone
    if not scopes:
        raise forbidden(f"user {caller.name} may not Get {info.name} anywhere")
    return ListScope(zone_filter, ws_filter, tuple(scopes))


def visible(scope: ListScope, zone: str, workspace: str) -> bool:
    """Whether a record the store's filters returned is the caller's to see."""
    return scope.scopes is None or in_scopes(scope.scopes, zone, workspace)


async def list_in_scope(ctx: ApiContext, info: KindInfo, scope: ListScope) -> list[Record]:
    records = await ctx.store.list_records(info.name, zone=scope.zone, workspace=scope.workspace)
    return [r for r in records if visible(scope, r.key.zone, r.key.workspace)]


async def list_resources(
    ctx: ApiContext,
    caller: Caller,
    info: KindInfo,
    *,
    zone: str | None,
    workspace: str | None,
    all_workspaces: bool,
) -> list[Record]:
    scope = list_scope(ctx, caller, info, zone, workspace, all_workspaces)
    return await list_in_scope(ctx, info, scope)


async def get_one(
    ctx: ApiContext,
    caller: Caller,
    info: KindInfo,
    name: str,
    *,
    zone: str | None,
    workspace: str | None,
    verb: str = "Describe",
) -> Record:
    scope = resolve_scope(
        info, caller, ctx.settings.zone, query_zone=zone, query_workspace=workspace
    )
    require(caller, info, verb, scope.zone, scope.workspace)
    key = Key(info.name, scope.zone, scope.workspace, name)
    try:
        return await ctx.store.get(key)
    except NotFound:
        raise not_found(f"{key} not found") from None


# --------------------------------------------------------------------------- delete


async def delete(
    ctx: ApiContext,
    caller: Caller,
    info: KindInfo,
    name: str,
    *,
    zone: str | None,
    workspace: str | None,
    cascade: bool = False,
) -> DeleteResult:
    if info.readonly:
        raise invalid(f"{info.name} is a read-only view; there is nothing to delete")
    record = await get_one(ctx, caller, info, name, zone=zone, workspace=workspace, verb="Delete")
    key = record.key
    if info.name in ("Workload", "Container"):
        await _set_desired(ctx, record, "drain", caller.name)
        await _event(ctx, key, "Draining", f"{key.kind} {key.name} draining", caller.name)
        return _deleted(key, "draining", f"{key.kind} {key.name} draining")
    if info.name == "Workspace":
        await _delete_workspace(ctx, caller, record, cascade)
    elif info.name == "Zone":
        await _delete_zone(ctx, caller, record, cascade)
    elif info.name == "Node":
        await _delete_node(ctx, caller, record, cascade)
    elif info.name == "User":
        await _delete_user(ctx, caller, record)
    else:
        await _remove(ctx, record, caller.name)
    return _deleted(key, "deleted", f"{key.kind} {key.name} deleted")


def _deleted(key: Key, status: Any, message: str) -> DeleteResult:
    return DeleteResult(
        kind=key.kind,
        name=key.name,
        zone=key.zone,
        workspace=key.workspace,
        status=status,
        message=message,
    )


async def _set_desired(ctx: ApiContext, record: Record, desired: Any, actor: str) -> Record:
    current = record
    for _ in range(CAS_RETRIES):
        if current.desired == desired:
            return current
        try:
            return await ctx.store.update(
                current.key,
                Patch(desired=desired),
                expected_version=current.version,
                actor=actor,
            )
        except Conflict:
            current = await ctx.store.get(current.key)
    raise conflict(f"{record.key} is being changed by someone else right now; try again")


async def _remove(ctx: ApiContext, record: Record, actor: str) -> None:
    with contextlib.suppress(NotFound):
        await ctx.store.delete(record.key, actor=actor)


def _refuse(what: str, dependents: dict[str, int], advice: str) -> ApiError:
    parts = ", ".join(
        f"{n} {kind.lower()}{'s' if n != 1 else ''}" for kind, n in dependents.items()
    )
    return conflict(f"{what} still has {parts}; {advice}")


async def _delete_workspace(ctx: ApiContext, caller: Caller, record: Record, cascade: bool) -> None:
    name = record.key.name
    workloads = await ctx.store.list_records("Workload", workspace=name)
    volumes = await ctx.store.list_records("Volume", workspace=name)
    counts = {k: n for k, n in (("Workload", len(workloads)), ("Volume", len(volumes))) if n}
    if counts and not cascade:
        raise _refuse(f"workspace {name}", counts, "delete them first, or delete with cascade")
    for workload in workloads:
        caller.require("Workload", "Delete", workload.key.zone, name)
        await _set_desired(ctx, workload, "drain", caller.name)
    for volume in volumes:
        caller.require("Volume", "Delete", volume.key.zone, name)
        await _remove(ctx, volume, caller.name)
    await _remove(ctx, record, caller.name)


ZONE_DEPENDENTS = ("Node", "Storage", "Resourcecredit", "Usercredit", "Volume", "Workload")


async def _delete_zone(ctx: ApiContext, caller: Caller, record: Record, cascade: bool) -> None:
    zone = record.key.name
    found = {kind: await ctx.store.list_records(kind, zone=zone) for kind in ZONE_DEPENDENTS}
    counts = {kind: len(records) for kind, records in found.items() if records}
    if counts and not cascade:
        raise _refuse(f"zone {zone}", counts, "delete them first, or delete with cascade")
    for kind, records in found.items():
        for dependent in records:
            caller.require(kind, "Delete", zone, dependent.key.workspace)
            if kind == "Workload":
                await _set_desired(ctx, dependent, "drain", caller.name)
            else:
                await _remove(ctx, dependent, caller.name)
    await _remove(ctx, record, caller.name)


async def _delete_node(ctx: ApiContext, caller: Caller, record: Record, cascade: bool) -> None:
    key = record.key
    containers = await ctx.store.list_records("Container", zone=key.zone, node=key.name)
    if containers and not cascade:
        raise _refuse(
            f"node {key.name}",
            {"Container": len(containers)},
            "set spec.schedulingDisabled: true and let them finish, or delete with "
            "cascade to drain them now",
        )
    for container in containers:
        await _set_desired(ctx, container, "drain", caller.name)
    await _remove(ctx, record, caller.name)


async def _delete_user(ctx: ApiContext, caller: Caller, record: Record) -> None:
    """Remove the user's tokens, then the user: each token fails from the moment it is
    gone, and a crash half-way leaves a user with fewer tokens, never a token whose
    user could be re-created to revive it."""
    name = record.key.name
    tokens = await ctx.store.list_records(TOKEN_KIND, zone=GLOBAL, workspace=GLOBAL, parent=name)
    for token in tokens:
        await _remove(ctx, token, caller.name)
        ctx.identity.apply_record(token.key, None)
    await _remove(ctx, record, caller.name)
    ctx.identity.apply_record(record.key, None)


# --------------------------------------------------------------------------- pause


async def set_paused(
    ctx: ApiContext,
    caller: Caller,
    name: str,
    *,
    paused: bool,
    zone: str | None,
    workspace: str | None,
) -> Record:
    info = KINDS["Workload"]
    verb = "Pause" if paused else "Resume"
    record = await get_one(ctx, caller, info, name, zone=zone, workspace=workspace, verb=verb)
    if record.desired == "drain":
        raise conflict(f"workload {name} is being deleted")
    updated = await _set_desired(ctx, record, "pause" if paused else "run", caller.name)
    await _event(
        ctx,
        record.key,
        "Paused" if paused else "Resumed",
        f"workload {name} {verb.lower()}d",
        caller.name,
    )
    return updated
