"""A user's credits in a zone: their weekly budget and what they spent.

Who may read what (``User: Credits``):

* your own credits: the verb in (zone, your default workspace) — the admin guide's
  ``user`` role, granted for kind All in (dora-cluster-1, <their workspace>), has it;
* another user's (``?user=``): the verb in (zone, every workspace), i.e. a grant with
  workspace ``All`` in that zone or in zone ``All`` — a zone's or the cluster's admin.
  A grant on one workspace never reads someone else's credits.

The numbers come from the Usercredit record the credit checker writes; see
`dora.credits` for the fields read and how a missing record reads (zeros).
"""

from __future__ import annotations

from dataclasses import asdict

from dora.api.context import ApiContext
from dora.api.errors import forbidden, invalid, not_found
from dora.api.identity import GLOBAL, Caller
from dora.api.schemas import CreditsOut
from dora.api.services.scope import require, resolve_zone
from dora.credits import USERCREDIT_KIND, credits_view
from dora.model import KINDS
from dora.store import Key


async def user_credits(
    ctx: ApiContext, caller: Caller, *, query_zone: str | None, user: str | None
) -> CreditsOut:
    zone = resolve_zone(caller, ctx.settings.zone, query_zone)
    target = user or caller.name
    if target == caller.name:
        require(caller, KINDS["User"], "Credits", zone, caller.default_workspace())
    elif not caller.allowed("User", "Credits", zone, GLOBAL):
        # Someone else's: only a grant covering every workspace of the zone.
        raise forbidden(
            f"user {caller.name} may not read the Credits of other users in zone {zone} "
            "(that needs User: Credits on every workspace of the zone)"
        )
    user_key = Key("User", GLOBAL, GLOBAL, target)
    zone_key = Key("Zone", GLOBAL, GLOBAL, zone)
    credit_key = Key(USERCREDIT_KIND, zone, GLOBAL, target)
    known = {r.key: r for r in await ctx.store.get_many([user_key, zone_key, credit_key])}
    if zone_key not in known:
        raise invalid(f"zone {zone!r} does not exist", field="zone")
    if user_key not in known:
        raise not_found(f"user {target!r} does not exist")
    credit = known.get(credit_key)
    view = credits_view(
        target,
        zone,
        known[user_key].spec,
        credit.computed if credit is not None else None,
        credit.updated_at if credit is not None else None,
    )
    return CreditsOut(**asdict(view))


__all__ = ["user_credits"]
