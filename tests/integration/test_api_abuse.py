"""Abuse protection on a real server: a per-IP ban after repeated bad tokens that lifts
by itself, a few typos that never ban, and a per-token rate limit (429 + Retry-After).

Each scenario talks from its own loopback address (127.0.0.x), so one scenario's ban
never touches another's requests.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import ApiProcess, make_token, remember, server_fixture, wait_until

MAX_FAILURES = 3
BAN_S = 2

banning = server_fixture(
    name="ban",
    env={"DORA_AUTH_MAX_FAILURES": str(MAX_FAILURES), "DORA_AUTH_BAN_S": str(BAN_S)},
)
limited = server_fixture(name="rate", env={"DORA_RATE_PER_S": "1", "DORA_RATE_BURST": "3"})

BAD = remember("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.bm90LWEtc2lnbmF0dXJl")


@pytest.fixture(scope="module")
def good_token(banning: ApiProcess) -> str:
    return banning.admin_token()


def _whoami(api: ApiProcess, token: str, ip: str) -> httpx.Response:
    with api.client(token, local_address=ip) as c:
        return c.get("/v1/whoami")


def test_repeated_bad_tokens_ban_the_address_then_the_ban_lifts(
    banning: ApiProcess, good_token: str
) -> None:
    ip = "127.0.0.2"
    for _ in range(MAX_FAILURES):
        assert _whoami(banning, BAD, ip).status_code == 401
    banned = _whoami(banning, good_token, ip)  # even a good token, from that address
    assert banned.status_code == 429
    assert banned.json()["code"] == "rate_limited"
    retry_after = int(banned.headers["Retry-After"])
    assert 1 <= retry_after <= BAN_S
    # Other addresses are not affected.
    assert _whoami(banning, good_token, "127.0.0.3").status_code == 200
    # The ban ends by itself.
    wait_until(
        lambda: _whoami(banning, good_token, ip).status_code == 200,
        within=BAN_S + 5,
        interval=0.2,
        what="the ban to lift",
    )


def test_a_few_typos_do_not_ban(banning: ApiProcess, good_token: str) -> None:
    ip = "127.0.0.4"
    for _ in range(MAX_FAILURES - 1):
        assert _whoami(banning, BAD, ip).status_code == 401
    assert _whoami(banning, good_token, ip).status_code == 200
    assert _whoami(banning, good_token, ip).status_code == 200


def test_forwarded_for_is_only_believed_from_a_trusted_proxy(
    banning: ApiProcess, good_token: str
) -> None:
    """A client cannot dodge its ban by claiming another address."""
    ip = "127.0.0.5"
    for n in range(MAX_FAILURES):
        with banning.client(BAD, local_address=ip) as c:
            r = c.get("/v1/whoami", headers={"X-Forwarded-For": f"10.1.2.{n}"})
            assert r.status_code == 401
    with banning.client(good_token, local_address=ip) as c:
        r = c.get("/v1/whoami", headers={"X-Forwarded-For": "10.9.9.9"})
    assert r.status_code == 429


def test_unauthenticated_health_routes_are_not_banned(banning: ApiProcess) -> None:
    ip = "127.0.0.6"
    for _ in range(MAX_FAILURES):
        assert _whoami(banning, BAD, ip).status_code == 401
    with httpx.Client(base_url=banning.url, transport=httpx.HTTPTransport(local_address=ip)) as c:
        assert c.get("/healthz").status_code == 200


@pytest.fixture(scope="module")
def limited_admin(limited: ApiProcess) -> Iterator[httpx.Client]:
    with limited.client(limited.admin_token()) as c:
        yield c


def test_rate_limit_answers_429_with_retry_after(
    limited: ApiProcess, limited_admin: httpx.Client
) -> None:
    token = make_token(limited_admin, "admin", "admin", "burst").token
    with limited.client(token) as c:
        codes = [c.get("/v1/whoami").status_code for _ in range(6)]
        assert codes[:3] == [200, 200, 200]
        assert 429 in codes[3:]
        r = c.get("/v1/whoami")
        assert r.status_code == 429
        assert r.json()["code"] == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1
        # The bucket refills (1 per second): the token works again by itself.
        wait_until(
            lambda: c.get("/v1/whoami").status_code == 200,
            within=5,
            interval=0.25,
            what="the rate limit to refill",
        )


def test_rate_limit_is_per_token(limited: ApiProcess, limited_admin: httpx.Client) -> None:
    first = make_token(limited_admin, "admin", "admin", "first").token
    second = make_token(limited_admin, "admin", "admin", "second").token
    with limited.client(first) as c:
        assert 429 in [c.get("/v1/whoami").status_code for _ in range(6)]
    with limited.client(second) as c:
        assert c.get("/v1/whoami").status_code == 200
