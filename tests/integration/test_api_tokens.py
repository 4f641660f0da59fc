"""Tokens over real requests: the guide's ``token create USER WORKSPACE ID``, listing,
revocation, and every way a token can be bad (401, never 500, never 403)."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator

import httpx
import jwt
import pytest

from dora.auth import issue_token
from tests.helpers import (
    NODE_USER,
    SECRET,
    SEED_USER,
    ApiProcess,
    apply,
    apply_many,
    make_token,
    remember,
    seed_documents,
    server_fixture,
    unique,
    user_doc,
    wait_until,
)

# Many bad tokens on purpose: the per-IP ban is tested in test_api_abuse.py.
api = server_fixture(name="tokens", env={"DORA_AUTH_MAX_FAILURES": "10000"})


@pytest.fixture(scope="module")
def admin(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(api.admin_token()) as c:
        apply_many(c, seed_documents())
        yield c


def _status(api: ApiProcess, token: str) -> int:
    with api.client(token) as c:
        return c.get("/v1/whoami").status_code


def _unauthorized(api: ApiProcess, token: str) -> str:
    with api.client(token) as c:
        r = c.get("/v1/whoami")
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    body = r.json()
    assert body["code"] == "unauthorized"
    assert token not in r.text
    message: str = body["message"]
    return message


def test_guide_token_create_user_workspace_id(api: ApiProcess, admin: httpx.Client) -> None:
    """``dora token create amedeo.setti amedeo.setti 1``: the workspace becomes the
    user's default; the id tells the user's tokens apart."""
    one = make_token(admin, SEED_USER, SEED_USER, "1")
    two = make_token(admin, SEED_USER, SEED_USER, "laptop")
    assert one.jti != two.jti
    with api.client(one.token) as user:
        me = user.get("/v1/whoami").json()
        assert (me["user"], me["workspace"]) == (SEED_USER, SEED_USER)
        listed = user.get("/v1/tokens").json()["items"]
    assert {(t["id"], t["workspace"]) for t in listed} >= {("1", SEED_USER), ("laptop", SEED_USER)}
    assert all("token" not in t for t in listed)  # shown once, at creation
    assert {t["created_by"] for t in listed} == {"admin"}


def test_guide_node_token_for_a_workspace_nobody_created(
    api: ApiProcess, admin: httpx.Client
) -> None:
    """``dora token create node node 1``: the guide never creates workspace ``node``."""
    node = make_token(admin, NODE_USER, NODE_USER, "1")
    assert _status(api, node.token) == 200


def test_token_for_a_missing_user_is_refused(admin: httpx.Client) -> None:
    r = admin.post("/v1/tokens", json={"user": "nobody-here", "workspace": "admin"})
    assert r.status_code == 400
    assert r.json()["field"] == "user"


def test_users_list_and_revoke_their_own_tokens(api: ApiProcess, admin: httpx.Client) -> None:
    mine = make_token(admin, SEED_USER, SEED_USER, unique("id"))
    spare = make_token(admin, SEED_USER, SEED_USER, unique("id"))
    with api.client(mine.token) as user:
        assert user.delete(f"/v1/tokens/{spare.jti}").status_code == 200
        jtis = {t["jti"] for t in user.get("/v1/tokens").json()["items"]}
    assert spare.jti not in jtis and mine.jti in jtis
    assert "revoked" in _unauthorized(api, spare.token)


def test_expired_token_gets_401(api: ApiProcess, admin: httpx.Client) -> None:
    short = make_token(admin, SEED_USER, SEED_USER, unique("id"), expires_in_s=1)
    listed = admin.get("/v1/tokens", params={"user": SEED_USER}).json()["items"]
    assert next(t for t in listed if t["jti"] == short.jti)["expires_at"] is not None
    wait_until(lambda: _status(api, short.token) == 401, within=10, what="the token to expire")
    assert "expired" in _unauthorized(api, short.token)


def test_revoked_token_gets_401_at_once(api: ApiProcess, admin: httpx.Client) -> None:
    doomed = make_token(admin, SEED_USER, SEED_USER, unique("id"))
    assert _status(api, doomed.token) == 200
    revoked = admin.delete(f"/v1/tokens/{doomed.jti}")
    assert revoked.status_code == 200
    assert revoked.json()["jti"] == doomed.jti
    assert "revoked" in _unauthorized(api, doomed.token)
    assert admin.delete(f"/v1/tokens/{doomed.jti}").status_code == 404


def test_deleted_users_tokens_get_401_at_once(api: ApiProcess, admin: httpx.Client) -> None:
    name = unique("leaver")
    apply(admin, user_doc(name, []))
    first = make_token(admin, name, "admin", "1")
    second = make_token(admin, name, "admin", "2")
    assert _status(api, first.token) == 200
    assert admin.delete(f"/v1/resources/user/{name}").status_code == 200
    _unauthorized(api, first.token)
    _unauthorized(api, second.token)
    # Re-creating a user of the same name does not revive the old tokens.
    apply(admin, user_doc(name, []))
    _unauthorized(api, first.token)


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _tampered_payload(token: str) -> str:
    """Same signature, payload changed to another user."""
    head, payload, sig = _segments(token)
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    return f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"


def _flipped_signature(token: str) -> str:
    head, payload, sig = _segments(token)
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    return f"{head}.{payload}.{flipped}"


def _alg_none(token: str) -> str:
    _, payload, _ = _segments(token)
    head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{payload}."


def _wrong_secret(token: str) -> str:
    forged, _ = issue_token(
        "not-the-cluster-secret-at-all", user="admin", workspace="admin", token_id="1", now=0
    )
    return forged


def _raw_secret(token: str) -> str:
    """Signed with the operator's secret itself, not the derived key."""
    claims = jwt.decode(token, options={"verify_signature": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that the guide's secret is short
        return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "forge",
    [_tampered_payload, _flipped_signature, _alg_none, _wrong_secret, _raw_secret],
    ids=["tampered-payload", "flipped-signature", "alg-none", "wrong-secret", "raw-secret"],
)
def test_tampered_tokens_get_401(api: ApiProcess, admin: httpx.Client, forge: object) -> None:
    good = make_token(admin, SEED_USER, SEED_USER, unique("id"))
    assert callable(forge)
    bad = remember(forge(good.token))
    assert bad != good.token
    _unauthorized(api, bad)
    assert _status(api, good.token) == 200


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Basic YWRtaW46YWRtaW4=", "Bearer not-a-jwt", "Bearer a.b.c"],
    ids=["none", "empty", "scheme-only", "basic", "garbage", "three-parts"],
)
def test_missing_or_malformed_authorization_gets_401(api: ApiProcess, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    with httpx.Client(base_url=api.url, headers=headers) as c:
        for method, path in [("GET", "/v1/whoami"), ("POST", "/v1/apply"), ("GET", "/v1/tokens")]:
            r = c.request(method, path)
            assert r.status_code == 401, f"{method} {path}: {r.status_code} {r.text}"
            assert r.json()["code"] == "unauthorized"


def test_unauthenticated_routes_need_no_token(api: ApiProcess) -> None:
    with httpx.Client(base_url=api.url) as c:
        for path in ("/healthz", "/readyz", "/v1/version", "/metrics", "/openapi.json"):
            assert c.get(path).status_code == 200, path
