"""Credits as the API reads them: a user's weekly budget (``User.spec.credits``) and
what they spent (the ``computed`` part of their ``Usercredit`` record).

This module is the one place that says what a Usercredit's ``computed`` part holds.
The credit checker (one per zone, not written yet) is its writer; the API only reads
it. A Usercredit record is keyed ``Key("Usercredit", <zone>, "", <user name>)``: one
per user and zone, named after the user. Its spec is empty; ``computed`` holds:

====================  ===========================================================
``weekly``            credits spent since the last weekly reset (number)
``total``             credits spent since the record was created (number)
====================  ===========================================================

(The original system's checker also wrote ``resetDate`` and ``outOfCredit``; the
reply does not use them.) A missing record, a record without ``computed``, or a value
that is not a finite, non-negative number reads as 0: a user who never ran on a GPU
has spent nothing, and bad data in the store never turns into a server error.

Pure: plain data in, plain data out, no I/O and no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

USERCREDIT_KIND = "Usercredit"
WEEKLY_USED = "weekly"
"""``computed`` field: credits spent this week."""
TOTAL_USED = "total"
"""``computed`` field: credits spent in all."""


@dataclass(frozen=True)
class CreditsView:
    """A user's credits in one zone."""

    user: str
    zone: str
    weekly_limit: float | None
    """``None``: no budget for this zone in ``User.spec.credits`` (unlimited)."""
    weekly_used: float
    total_used: float
    remaining: float | None
    """Credits left this week (0 once spent; ``None`` when unlimited)."""
    updated_at: float | None
    """When the credit checker last wrote (the record's write time); ``None`` when it
    never has."""


def amount(value: Any) -> float:
    """A stored amount as a number: finite and non-negative, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else 0.0


def weekly_limit(user_spec: Mapping[str, Any], zone: str) -> float | None:
    """The weekly budget of ``User.spec.credits`` for `zone`, or ``None`` (unlimited)."""
    for entry in user_spec.get("credits") or []:
        if isinstance(entry, Mapping) and entry.get("zone") == zone:
            weekly = entry.get("weekly")
            if isinstance(weekly, int | float) and not isinstance(weekly, bool):
                return float(weekly)
    return None


def credits_view(
    user: str,
    zone: str,
    user_spec: Mapping[str, Any],
    computed: Mapping[str, Any] | None,
    written_at: float | None = None,
) -> CreditsView:
    """The reply of ``GET /v1/users/me/credits`` from the User record's spec and the
    Usercredit record's ``computed`` part (``None``: no record, or nothing computed
    yet) and write time."""
    limit = weekly_limit(user_spec, zone)
    used = amount((computed or {}).get(WEEKLY_USED))
    total = amount((computed or {}).get(TOTAL_USED))
    remaining = None if limit is None else max(0.0, limit - used)
    return CreditsView(
        user=user,
        zone=zone,
        weekly_limit=limit,
        weekly_used=used,
        total_used=total,
        remaining=remaining,
        updated_at=written_at if computed else None,
    )


__all__ = [
    "TOTAL_USED",
    "USERCREDIT_KIND",
    "WEEKLY_USED",
    "CreditsView",
    "amount",
    "credits_view",
    "weekly_limit",
]
