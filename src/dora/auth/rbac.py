"""Who may do what: role-based access over (kind, verb, zone, workspace).

A user holds grants — the entries of ``User.spec.resources`` — each naming a kind, a
zone, a workspace (any of them may be ``All``) and a role. A role maps kinds to verbs.
An action is allowed when some grant matches the kind, zone and workspace *actually
acted on* and its role lists the verb for that kind. Everything else is denied.

Unlike the original system, a grant whose role does not mention the kind is simply
not a match: evaluation goes on to the next grant (it never turns into a server
error), and a missing role denies.

Actions on global kinds (Zone, Workspace, User, Role) carry the empty zone, which only
a grant with ``zone: All`` matches; the same holds for the empty workspace. So a
grant scoped to one zone or workspace can never reach outside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

ALL = "All"


@dataclass(frozen=True)
class Grant:
    """One entry of a user's ``spec.resources``."""

    kind: str
    zone: str
    workspace: str
    role: str


@dataclass(frozen=True)
class Permissions:
    """A role's permission map, verbs folded to lower case (roles compare verbs
    case-insensitively; kinds are case-sensitive, ``All`` covers every kind)."""

    verbs_by_kind: Mapping[str, frozenset[str]]

    @classmethod
    def from_spec(cls, permission: Mapping[str, Iterable[str]]) -> Permissions:
        return cls(
            {kind: frozenset(v.lower() for v in verbs) for kind, verbs in permission.items()}
        )

    def allows(self, kind: str, verb: str) -> bool:
        wanted = verb.lower()
        for key in (kind, ALL):
            verbs = self.verbs_by_kind.get(key)
            if verbs is not None and (wanted in verbs or "all" in verbs):
                return True
        return False


@dataclass(frozen=True)
class Action:
    """What a request does: the kind and verb, and the scope it really touches."""

    kind: str
    verb: str
    zone: str
    workspace: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    grant: Grant | None
    """The grant that allowed the action (None when denied)."""

    def __bool__(self) -> bool:
        return self.allowed


def _matches(pattern: str, value: str) -> bool:
    return pattern in (ALL, value)


def decide(grants: Sequence[Grant], roles: Mapping[str, Permissions], action: Action) -> Decision:
    """Allow when one grant covers the action's kind, zone and workspace and its role
    lists the verb for that kind. Deny by default."""
    for grant in grants:
        if not (
            _matches(grant.kind, action.kind)
            and _matches(grant.zone, action.zone)
            and _matches(grant.workspace, action.workspace)
        ):
            continue
        role = roles.get(grant.role)
        if role is not None and role.allows(action.kind, action.verb):
            return Decision(True, grant)
    return Decision(False, None)


def visible_scopes(
    grants: Sequence[Grant], roles: Mapping[str, Permissions], kind: str, verb: str
) -> list[tuple[str, str]]:
    """(zone, workspace) patterns where the user may do `verb` on `kind`.

    Used to filter a listing across workspaces (``-A``): a record is visible when
    some pair matches its zone and workspace (``All`` matches anything).
    """
    scopes: list[tuple[str, str]] = []
    for grant in grants:
        role = roles.get(grant.role)
        if _matches(grant.kind, kind) and role is not None and role.allows(kind, verb):
            pair = (grant.zone, grant.workspace)
            if pair not in scopes:
                scopes.append(pair)
    return scopes


def in_scopes(scopes: Sequence[tuple[str, str]], zone: str, workspace: str) -> bool:
    """True when (zone, workspace) falls under one of `scopes`."""
    return any(_matches(z, zone) and _matches(w, workspace) for z, w in scopes)
