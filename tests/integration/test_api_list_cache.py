"""The API's listing cache over a real server: a repeated listing is answered from
memory, yet is never staler than the database (writes of this server, of another
process, of another replica), and every request is still authenticated, rate-limited
and authorised as on FastAPI's own route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dora.store import Key, NewRecord, Store
from tests.helpers import (
    ZONE,
    ApiProcess,
    api_replicas,
    apply,
    apply_many,
    doc,
    grant,
    make_token,
    node_doc,
    server_fixture,
    unique,
    user_doc,
    user_with_role,
    wait_until,
    with_store,
    workload_doc,
)

api = server_fixture(name="list-cache")
limited = server_fixture(
    name="list-cache-limited",
    env={
        "DORA_RATE_PER_S": "0.2",
        "DORA_RATE_BURST": "3",
        "DORA_AUTH_MAX_FAILURES": "3",
        "DORA_AUTH_WINDOW_S": "60",
        "DORA_AUTH_BAN_S": "60",
    },
)
uncached = server_fixture(name="list-cache-off", env={"DORA_API_LIST_CACHE": "off"})

FRESH = {"Cache-Control": "no-cache"}
ROUTE = {"via": "route"}
"""An unknown query parameter: the cache leaves the request to FastAPI's own route."""
READER = {"Workload": ["Get"]}


@pytest.fixture(scope="module")
def admin(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(api.admin_token()) as c:
        yield c


def names(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return sorted(item["name"] for item in r.json()["items"])


def cache(r: httpx.Response) -> str | None:
    return r.headers.get("x-dora-list-cache")


def workspace_with(admin: httpx.Client, count: int) -> tuple[str, list[str]]:
    ws = unique("ws")
    wks = [unique("wk") for _ in range(count)]
    apply_many(admin, [doc("Workspace", ws), *(workload_doc(w, workspace=ws) for w in wks)])
    return ws, sorted(wks)


def test_a_repeated_listing_is_a_hit_with_the_routes_own_answer(admin: httpx.Client) -> None:
    ws, wks = workspace_with(admin, 3)
    params = {"workspace": ws}
    first = admin.get("/v1/resources/workload", params=params)
    second = admin.get("/v1/resources/wk", params=params)  # an alias: the same listing
    assert (cache(first), cache(second)) == ("miss", "hit")
    assert names(second) == wks
    # FastAPI's own route gives the same document.
    route = admin.get("/v1/resources/workload", params={**params, **ROUTE})
    assert cache(route) is None
    assert second.json() == route.json() == first.json()
    assert second.headers["content-type"] == route.headers["content-type"]
    # Asked not to use a cache: read from the store again, the same document.
    fresh = admin.get("/v1/resources/workload", params=params, headers=FRESH)
    assert (cache(fresh), fresh.json()) == ("miss", route.json())


def test_a_write_through_the_api_is_listed_at_once(admin: httpx.Client) -> None:
    ws, wks = workspace_with(admin, 1)
    params = {"workspace": ws}
    admin.get("/v1/resources/workload", params=params)
    assert cache(admin.get("/v1/resources/workload", params=params)) == "hit"
    late = unique("late")
    apply(admin, workload_doc(late, workspace=ws))
    after = admin.get("/v1/resources/workload", params=params)
    assert cache(after) == "miss"
    assert names(after) == sorted([*wks, late])
    deleted = admin.delete(f"/v1/resources/workload/{late}", params=params)
    assert deleted.status_code == 200, deleted.text
    draining = admin.get("/v1/resources/workload", params=params).json()["items"]
    assert {w["name"]: w["status"] for w in draining}[late] == "draining"


def test_a_write_of_another_process_is_listed_at_once(api: ApiProcess, admin: httpx.Client) -> None:
    ws, wks = workspace_with(admin, 1)
    params = {"workspace": ws}
    admin.get("/v1/resources/workload", params=params)
    assert cache(admin.get("/v1/resources/workload", params=params)) == "hit"
    other = unique("other")

    async def write(store: Store) -> None:  # straight into the server's SQLite file
        spec = workload_doc(other, workspace=ws)["spec"]
        key = Key("Workload", ZONE, ws, other)
        await store.create(NewRecord(key=key, spec=spec, owner="admin"), actor="admin")

    with_store(api, write)
    after = admin.get("/v1/resources/workload", params=params)
    assert cache(after) == "miss"
    assert names(after) == sorted([*wks, other])


def test_callers_with_different_grants_never_share_an_answer(admin: httpx.Client) -> None:
    ws_a, wks_a = workspace_with(admin, 2)
    ws_b, wks_b = workspace_with(admin, 1)
    alice = user_with_role(admin, unique("alice"), READER, workspace=ws_a)
    bob = user_with_role(admin, unique("bob"), READER, workspace=ws_b)
    everywhere = {"all": "true"}
    with httpx.Client(base_url=admin.base_url) as c:
        for _ in range(2):  # the second round is answered from memory
            seen_a = c.get("/v1/resources/workload", params=everywhere, headers=_auth(alice))
            seen_b = c.get("/v1/resources/workload", params=everywhere, headers=_auth(bob))
            assert names(seen_a) == wks_a
            assert names(seen_b) == wks_b
        assert (cache(seen_a), cache(seen_b)) == ("hit", "hit")
        # Outside their grant: 403 every time, cached or not.
        for _ in range(2):
            r = c.get("/v1/resources/workload", params={"workspace": ws_b}, headers=_auth(alice))
            assert r.status_code == 403, r.text
            assert r.json()["code"] == "forbidden"


def test_a_grant_taken_away_is_refused_at_once(admin: httpx.Client) -> None:
    ws, wks = workspace_with(admin, 1)
    name = unique("carol")
    carol = user_with_role(admin, name, READER, workspace=ws)
    params = {"workspace": ws}
    with httpx.Client(base_url=admin.base_url, headers=_auth(carol)) as c:
        assert names(c.get("/v1/resources/workload", params=params)) == wks
        assert cache(c.get("/v1/resources/workload", params=params)) == "hit"
        apply(admin, user_doc(name, [grant("Volume", f"{name}-role", workspace=ws)], workspace=ws))
        r = c.get("/v1/resources/workload", params=params)
        assert r.status_code == 403, r.text


def test_revoked_and_deleted_users_tokens_get_401_on_a_cached_listing(
    admin: httpx.Client,
) -> None:
    ws, _ = workspace_with(admin, 1)
    params = {"workspace": ws}
    name = unique("dave")
    dave = user_with_role(admin, name, READER, workspace=ws)
    spare = make_token(admin, name, ws, "2")
    for token in (dave, spare):
        with httpx.Client(base_url=admin.base_url, headers=_auth(token)) as c:
            c.get("/v1/resources/workload", params=params)
            assert cache(c.get("/v1/resources/workload", params=params)) == "hit"
    assert admin.delete(f"/v1/tokens/{dave.jti}").status_code == 200
    with httpx.Client(base_url=admin.base_url, headers=_auth(dave)) as c:
        r = c.get("/v1/resources/workload", params=params)
        assert (r.status_code, r.json()["message"]) == (401, "invalid token: revoked")
        assert r.headers["www-authenticate"] == "Bearer"
    assert admin.delete(f"/v1/resources/user/{name}").status_code == 200
    with httpx.Client(base_url=admin.base_url, headers=_auth(spare)) as c:
        r = c.get("/v1/resources/workload", params=params)
        # Deleting a user revokes its tokens with it.
        assert (r.status_code, r.json()["message"]) == (401, "invalid token: revoked")


def test_a_token_that_expires_stops_listing_at_its_expiry(admin: httpx.Client) -> None:
    ws, wks = workspace_with(admin, 1)
    params = {"workspace": ws}
    name = unique("fay")
    user_with_role(admin, name, READER, workspace=ws)
    short = make_token(admin, name, ws, "short", expires_in_s=2)
    with httpx.Client(base_url=admin.base_url, headers=_auth(short)) as c:
        assert names(c.get("/v1/resources/workload", params=params)) == wks
        assert cache(c.get("/v1/resources/workload", params=params)) == "hit"

        def refused() -> httpx.Response | None:
            r = c.get("/v1/resources/workload", params=params)
            return r if r.status_code == 401 else None

        answer = wait_until(refused, within=15, what="the expired token to be refused")
    assert "expired" in answer.json()["message"]


def test_what_the_cache_does_not_recognise_goes_to_the_route(admin: httpx.Client) -> None:
    ws, wks = workspace_with(admin, 1)
    listing = "/v1/resources/workload"
    # FastAPI's own validation answers a bad flag, a too long name, an unknown kind.
    bad = admin.get(listing, params={"workspace": ws, "all": "maybe"})
    assert (bad.status_code, bad.json()["field"], cache(bad)) == (422, "all", None)
    long = admin.get(listing, params={"workspace": "w" * 254})
    assert (long.status_code, long.json()["field"], cache(long)) == (422, "workspace", None)
    unknown = admin.get("/v1/resources/gadget")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    # A repeated or unknown parameter: the route, with its meaning, never the cache.
    for query in (f"workspace={ws}&workspace={ws}", f"workspace={ws}&colour=blue"):
        r = admin.get(f"{listing}?{query}")
        assert (names(r), cache(r)) == (wks, None)
    # No token: the route's 401.
    with httpx.Client(base_url=admin.base_url) as anonymous:
        r = anonymous.get(listing, params={"workspace": ws})
        assert (r.status_code, cache(r)) == (401, None)


def test_nodes_are_never_cached_their_status_follows_the_clock(admin: httpx.Client) -> None:
    name = unique("node")
    apply(admin, node_doc(name))
    for _ in range(2):
        r = admin.get("/v1/resources/node")
        assert r.status_code == 200
        assert cache(r) is None
        statuses = {n["name"]: n["status"] for n in r.json()["items"]}
        assert statuses[name].startswith("NOT_READY")


def test_metrics_count_hits_and_misses_under_the_routes_template(
    api: ApiProcess, admin: httpx.Client
) -> None:
    ws, _ = workspace_with(admin, 1)
    before = _metrics(admin)
    for _ in range(3):
        admin.get("/v1/resources/workload", params={"workspace": ws})
    after = _metrics(admin)

    def grew(series: str) -> float:
        return after[series] - before.get(series, 0)

    assert grew('dora_api_list_cache_total{result="miss"}') == 1
    assert grew('dora_api_list_cache_total{result="hit"}') == 2
    assert (
        grew('dora_api_requests_total{method="GET",route="/v1/resources/{kind}",status="200"}') >= 3
    )


def test_the_rate_limit_and_the_failed_login_ban_still_apply(limited: ApiProcess) -> None:
    token = limited.admin_token()
    with limited.client(token) as c:
        answers = [c.get("/v1/resources/workload") for _ in range(4)]
    assert [cache(r) for r in answers[:2]] == ["miss", "hit"]
    assert answers[-1].status_code == 429
    assert int(answers[-1].headers["retry-after"]) >= 1
    with httpx.Client(base_url=limited.url, headers={"Authorization": "Bearer nope"}) as bad:
        failures = [bad.get("/v1/resources/workload").status_code for _ in range(4)]
    assert failures[:3] == [401, 401, 401]
    assert failures[3] == 429  # banned: this address sent 3 bad tokens


def test_switched_off_every_listing_goes_to_the_route(uncached: ApiProcess) -> None:
    with uncached.client(uncached.admin_token()) as c:
        answers = [c.get("/v1/resources/workspace") for _ in range(2)]
    assert [r.status_code for r in answers] == [200, 200]
    assert [cache(r) for r in answers] == [None, None]


@pytest.fixture
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    """Replica A (first start) and replica B on one fresh database."""
    with api_replicas(tmp_path_factory.mktemp("list-cache-replicas")) as pair:
        yield pair


def wait_for_hit(c: httpx.Client, params: dict[str, str]) -> None:
    wait_until(
        lambda: cache(c.get("/v1/resources/workload", params=params)) == "hit",
        within=10,
        what="replica B to answer the listing from memory",
    )


def test_a_warm_replica_lists_what_another_replica_just_wrote(
    replicas: tuple[ApiProcess, ApiProcess],
) -> None:
    a, b = replicas
    token = a.admin_token()
    with a.client(token) as ca, b.client(token) as cb:
        ws, wks = workspace_with(ca, 1)
        params = {"workspace": ws}
        wait_for_hit(cb, params)
        late = unique("late")
        apply(ca, workload_doc(late, workspace=ws))
        after = cb.get("/v1/resources/workload", params=params)
        assert cache(after) == "miss"
        assert names(after) == sorted([*wks, late])


def test_a_token_revoked_on_another_replica_stops_listing_there(
    replicas: tuple[ApiProcess, ApiProcess],
) -> None:
    a, b = replicas
    with a.client(a.admin_token()) as ca:
        ws, _ = workspace_with(ca, 1)
        params = {"workspace": ws}
        erin = user_with_role(ca, unique("erin"), READER, workspace=ws)
        with httpx.Client(base_url=b.url, headers=_auth(erin)) as cb:
            wait_for_hit(cb, params)
            assert ca.delete(f"/v1/tokens/{erin.jti}").status_code == 200
            wait_until(
                lambda: cb.get("/v1/resources/workload", params=params).status_code == 401,
                within=10,
                what="replica B to refuse the token revoked on replica A",
            )


# ---------------------------------------------------------------------------- helpers


def _auth(token: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.token}"}


def _metrics(c: httpx.Client) -> dict[str, float]:
    text = c.get("/metrics").text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
