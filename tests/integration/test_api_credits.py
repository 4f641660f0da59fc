"""`GET /v1/users/me/credits` on a real API server: the weekly budget from the User
record, the amounts from the Usercredit record's computed part (written here straight
into the server's database, as the credit checker will), zeros before it has written,
and who may read whose credits."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dora.credits import TOTAL_USED, USERCREDIT_KIND, WEEKLY_USED
from dora.store import Key, NewRecord, NotFound, Patch, Store
from tests.helpers import (
    SEED_USER,
    ZONE,
    ApiProcess,
    apply_many,
    doc,
    grant,
    make_token,
    role_doc,
    seed_documents,
    server_fixture,
    unique,
    user_doc,
    with_store,
)

api = server_fixture(name="credits")
OTHER_ZONE = "dora-cluster-2"
PATH = "/v1/users/me/credits"


@pytest.fixture(scope="module")
def admin(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(api.admin_token()) as c:
        apply_many(c, [*seed_documents(), doc("Zone", OTHER_ZONE)])
        yield c


@pytest.fixture(scope="module")
def guide_user(api: ApiProcess, admin: httpx.Client) -> Iterator[httpx.Client]:
    with api.client(make_token(admin, SEED_USER, SEED_USER).token) as c:
        yield c


def _spend(api: ApiProcess, user: str, computed: dict[str, object], zone: str = ZONE) -> float:
    """Write the Usercredit's computed part as the credit checker does; its write time."""
    key = Key(USERCREDIT_KIND, zone, "", user)

    async def write(store: Store) -> float:
        try:
            record = await store.get(key)
        except NotFound:
            record = await store.create(NewRecord(key=key, spec={}, owner="creditsys"), actor="t")
        written = await store.update(
            key, Patch(computed=computed), expected_version=record.version, actor="creditsys"
        )
        return written.updated_at

    return with_store(api, write)


def test_before_the_checker_wrote_anything_the_amounts_are_zero(guide_user: httpx.Client) -> None:
    r = guide_user.get(PATH)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "user": SEED_USER,
        "zone": ZONE,
        "weekly_limit": 500.0,
        "weekly_used": 0.0,
        "total_used": 0.0,
        "remaining": 500.0,
        "updated_at": None,
    }


def test_the_amounts_come_from_the_usercredit_record(api: ApiProcess, admin: httpx.Client) -> None:
    who = unique("fay")
    spec = {
        "resources": [grant("All", "user", workspace=who)],
        "credits": [{"zone": ZONE, "weekly": 100}],
        "default": {"workspace": who, "zone": ZONE},
    }
    apply_many(admin, [doc("Workspace", who), doc("User", who, spec)])
    written = _spend(api, who, {WEEKLY_USED: 37.5, TOTAL_USED: 120.25, "resetDate": "2026-11-29"})
    with api.client(make_token(admin, who, who).token) as c:
        out = c.get(PATH).json()
        assert out == {
            "user": who,
            "zone": ZONE,
            "weekly_limit": 100.0,
            "weekly_used": 37.5,
            "total_used": 120.25,
            "remaining": 62.5,
            "updated_at": written,
        }
        # Over the budget: nothing remains (never a negative amount).
        _spend(api, who, {WEEKLY_USED: 130, TOTAL_USED: 400})
        over = c.get(PATH).json()
        assert (over["weekly_used"], over["remaining"]) == (130.0, 0.0)
        # Garbage in the store reads as 0, never a 500.
        _spend(api, who, {WEEKLY_USED: "lots", TOTAL_USED: -3})
        bad = c.get(PATH).json()
        assert (bad["weekly_used"], bad["total_used"], bad["remaining"]) == (0.0, 0.0, 100.0)


def test_no_budget_in_a_zone_means_unlimited(api: ApiProcess, admin: httpx.Client) -> None:
    r = admin.get(PATH, params={"zone": OTHER_ZONE, "user": SEED_USER})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["zone"], out["weekly_limit"], out["remaining"]) == (OTHER_ZONE, None, None)


def test_a_user_reads_only_their_own_credits(admin: httpx.Client, guide_user: httpx.Client) -> None:
    r = guide_user.get(PATH, params={"user": "node"})
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden" and "Credits" in r.json()["message"]
    # Naming yourself is the same as naming nobody.
    assert guide_user.get(PATH, params={"user": SEED_USER}).json()["user"] == SEED_USER
    # The guide's grant is in dora-cluster-1 only.
    assert guide_user.get(PATH, params={"zone": OTHER_ZONE}).status_code == 403
    # The admin reads anyone's.
    assert admin.get(PATH, params={"user": SEED_USER}).json()["weekly_limit"] == 500.0


def test_a_zone_admin_reads_others_in_that_zone_only(api: ApiProcess, admin: httpx.Client) -> None:
    who = unique("zone-admin")
    apply_many(
        admin,
        [
            role_doc("credit-viewer", {"User": ["Credits"]}),
            user_doc(who, [grant("User", "credit-viewer", workspace="All")], workspace=who),
        ],
    )
    with api.client(make_token(admin, who, who).token) as c:
        assert c.get(PATH, params={"user": SEED_USER}).status_code == 200
        assert c.get(PATH, params={"user": SEED_USER, "zone": OTHER_ZONE}).status_code == 403


def test_a_workspace_grant_does_not_read_other_users(api: ApiProcess, admin: httpx.Client) -> None:
    """User Credits granted in one workspace reads your own credits, nobody else's."""
    who = unique("ws-viewer")
    apply_many(
        admin,
        [
            role_doc("credit-viewer", {"User": ["Credits"]}),
            user_doc(who, [grant("User", "credit-viewer", workspace=who)], workspace=who),
        ],
    )
    with api.client(make_token(admin, who, who).token) as c:
        assert c.get(PATH).status_code == 200
        assert c.get(PATH, params={"user": SEED_USER}).status_code == 403


def test_without_the_verb_is_403(api: ApiProcess, admin: httpx.Client) -> None:
    who = unique("no-credits")
    apply_many(
        admin,
        [
            role_doc("no-credits", {"User": ["Get"], "Usercredit": ["Describe"]}),
            user_doc(who, [grant("All", "no-credits", workspace=who)], workspace=who),
        ],
    )
    with api.client(make_token(admin, who, who).token) as c:
        r = c.get(PATH)
    assert r.status_code == 403
    assert "Credits" in r.json()["message"]


def test_bad_zone_and_unknown_user(admin: httpx.Client, guide_user: httpx.Client) -> None:
    r = guide_user.get(PATH, params={"zone": "All"})
    assert (r.status_code, r.json()["field"]) == (400, "zone")
    r = admin.get(PATH, params={"zone": "no-such-zone"})
    assert (r.status_code, r.json()["field"]) == (400, "zone")
    r = admin.get(PATH, params={"user": "ghost"})
    assert r.status_code == 404 and "ghost" in r.json()["message"]
    # Someone who may not read others learns nothing about who exists.
    assert guide_user.get(PATH, params={"user": "ghost"}).status_code == 403
