"""Specs of the access-control kinds: User (who may do what, where) and Role (verbs per kind).

RBAC itself lives in ``dora.auth``; these models only guarantee that what it reads is
well formed: kinds spelt as Dora spells them, verbs from a known set (so a typo such as
``Aply`` is an error at apply time instead of a silent denial later).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from dora.model.kinds import KINDS, PSEUDO_KINDS, kind_hint
from dora.model.scalars import ALL, Name, NameOrAll, NonNegNumber, describe, fail, scalar_text
from dora.model.specs.base import Spec

VERBS: tuple[str, ...] = (
    "Apply",
    "Delete",
    "Get",
    "GetOne",
    "Describe",
    "Event",
    "Version",
    "Pause",
    "Resume",
    "Shell",
    "Token",
    "Log",
    "Use",
    "Upload",
    "Download",
    "Ls",
    "Sync",
    "Clone",
    "Credits",
    "Report",
    "Create",
    "Revoke",
    "List",
)
"""Every verb a Role may grant (matched ignoring case)."""

_VERBS_LOWER = {v.lower(): v for v in VERBS}

PERMISSION_KINDS: tuple[str, ...] = (*KINDS, *PSEUDO_KINDS)
"""Keys allowed in ``Role.spec.permission`` and kinds in ``User.spec.resources``."""


def _permission_kind(value: Any) -> str:
    text = scalar_text(value)
    if text in PERMISSION_KINDS:
        return text
    msg = f"unknown kind {describe(text)}"
    hint = kind_hint(text, PSEUDO_KINDS)
    if hint:
        msg += f"; did you mean {hint}? (kinds are case-sensitive)"
    fail(f"{msg}; valid: {', '.join(PERMISSION_KINDS)}")


def _verb(value: Any) -> str:
    text = scalar_text(value)
    if text.strip().lower() in _VERBS_LOWER:
        return text
    fail(f"unknown verb {describe(text)}; valid verbs (any case): {', '.join(VERBS)}")


PermissionKind = Annotated[str, BeforeValidator(_permission_kind)]
Verb = Annotated[str, BeforeValidator(_verb)]


def normalize_verb(verb: str) -> str:
    """The form RBAC compares: lower case, trimmed (``GetOne`` → ``getone``)."""
    return verb.strip().lower()


class RoleSpec(Spec):
    """``permission``: kind (case-sensitive; ``All`` = every kind) → verbs (any case).

    Verbs are stored as written; use :meth:`verbs_for` / :meth:`allows` (lower-cased)
    for decisions.
    """

    permission: dict[PermissionKind, list[Verb]] = Field(default_factory=dict)

    def normalized(self) -> dict[str, frozenset[str]]:
        """Kind → lower-case verbs, the form RBAC evaluation works on."""
        return {k: frozenset(normalize_verb(v) for v in vs) for k, vs in self.permission.items()}

    def verbs_for(self, kind: str) -> frozenset[str]:
        """Lower-case verbs granted on ``kind``, including those granted on ``All``."""
        table = self.normalized()
        return table.get(kind, frozenset()) | table.get(ALL, frozenset())

    def allows(self, kind: str, verb: str) -> bool:
        """Whether this role grants ``verb`` (any case) on ``kind`` (exact name)."""
        return normalize_verb(verb) in self.verbs_for(kind)


class UserDefault(Spec):
    """Where the web app and CLI point a user first."""

    workspace: Name | None = None
    zone: Name | None = None


class UserResource(Spec):
    """One grant: ``role`` applies to ``kind`` in ``zone``/``workspace`` (``All`` = any)."""

    kind: PermissionKind
    zone: NameOrAll
    workspace: NameOrAll
    role: Name

    def matches(self, kind: str, zone: str, workspace: str) -> bool:
        """Whether this entry covers an operation on ``kind`` in ``zone``/``workspace``."""
        return (
            self.kind in (ALL, kind)
            and self.zone in (ALL, zone)
            and self.workspace in (ALL, workspace)
        )


class UserCredit(Spec):
    """Weekly credit budget in one zone (credits are spent per GPU-hour)."""

    zone: Name
    weekly: NonNegNumber


class UserSpec(Spec):
    """A user: defaults, role grants and weekly credit budgets."""

    default: UserDefault = Field(default_factory=UserDefault)
    resources: list[UserResource] = Field(default_factory=list)
    credits: list[UserCredit] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_budget_per_zone(self) -> UserSpec:
        seen: set[str] = set()
        for credit in self.credits:
            if credit.zone in seen:
                fail(f"zone {credit.zone!r} has two weekly budgets", field="credits")
            seen.add(credit.zone)
        return self

    def weekly_credits(self, zone: str) -> int | float | None:
        """The weekly budget in ``zone``, or ``None`` when the user has none there."""
        for credit in self.credits:
            if credit.zone == zone:
                return credit.weekly
        return None


__all__ = [
    "PERMISSION_KINDS",
    "VERBS",
    "RoleSpec",
    "UserCredit",
    "UserDefault",
    "UserResource",
    "UserSpec",
    "normalize_verb",
]
