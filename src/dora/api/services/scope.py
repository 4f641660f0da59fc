"""Which zone and workspace a request acts on.

The scope comes from the document's metadata, else the request's query, else the
caller's defaults, else the server's zone. When the document and the query both name
one and they differ, the request is refused: RBAC must check the scope that is really
written, and guessing which one the user meant is how the original let users act in
workspaces they had no right to.
"""

from __future__ import annotations

from dataclasses import dataclass

from dora.api.errors import invalid
from dora.api.identity import Caller
from dora.auth import ALL, visible_scopes
from dora.model import KindInfo

ALL_ZONES = "All"
ZONE_READ_VERBS = frozenset({"get", "describe"})
"""Verbs with which a zone-level kind may be read from a grant on one workspace."""


def zone_level(info: KindInfo) -> bool:
    """Kinds that belong to a zone but to no workspace: Node, Storage, CPU, GPU, …"""
    return info.zoned and not info.workspaced


def read_zones(caller: Caller, info: KindInfo, verb: str) -> list[str] | None:
    """For a Get/Describe of a zone-level kind: the zones (``All`` = every zone) where
    some grant — on any workspace — lets the caller read it; None for other actions.

    The admin guide's ``user`` role lists ``CPU``, ``GPU``, ``Storage`` and
    ``Resourcecredit: Get`` for a user granted one workspace: seeing the zone's
    inventory and prices is part of working in it. Writes to zone-level kinds still
    need a grant on every workspace of the zone."""
    if not zone_level(info) or verb.lower() not in ZONE_READ_VERBS:
        return None
    return [z for z, _ in visible_scopes(caller.user.grants, caller.roles, info.name, verb)]


def require(caller: Caller, info: KindInfo, verb: str, zone: str, workspace: str) -> None:
    """403 unless the caller may do `verb` on `info` in (`zone`, `workspace`)."""
    zones = read_zones(caller, info, verb)
    if zones is not None and (ALL in zones or zone in zones):
        return
    caller.require(info.name, verb, zone, workspace)


@dataclass(frozen=True)
class Scope:
    zone: str
    workspace: str


def _pick(
    label: str, from_doc: str | None, from_query: str | None, fallbacks: tuple[str | None, ...]
) -> str:
    if from_doc and from_query and from_doc != from_query:
        raise invalid(
            f"metadata.{label} is {from_doc!r} but the request is for {label} {from_query!r}; "
            f"drop one of them or make them agree",
            field=f"metadata.{label}",
        )
    for value in (from_doc, from_query, *fallbacks):
        if value:
            return value
    return ""


def resolve_scope(
    info: KindInfo,
    caller: Caller,
    server_zone: str,
    *,
    doc_zone: str | None = None,
    doc_workspace: str | None = None,
    query_zone: str | None = None,
    query_workspace: str | None = None,
) -> Scope:
    """The (zone, workspace) a single-resource request acts on; empty for global parts."""
    zone = (
        _pick("zone", doc_zone, query_zone, (caller.user.default_zone, server_zone))
        if info.zoned
        else ""
    )
    workspace = (
        _pick("workspace", doc_workspace, query_workspace, (caller.default_workspace(),))
        if info.workspaced
        else ""
    )
    if zone == ALL_ZONES:
        raise invalid("zone All names every zone; name one zone here", field="zone")
    return Scope(zone, workspace)


def resolve_zone(caller: Caller, server_zone: str, query_zone: str | None) -> str:
    """The one zone a request that names no document acts in: the query's, else the
    caller's default, else the server's (``All`` is refused)."""
    zone = query_zone or caller.user.default_zone or server_zone
    if zone == ALL_ZONES:
        raise invalid("zone All names every zone; name one zone here", field="zone")
    return zone
