"""Tokens: signed, expiring, scoped, never trusted when tampered with."""

from __future__ import annotations

import base64
import json

import pytest

from dora.auth import InvalidToken, check_secret, fingerprint, issue_token, verify_token

SECRET = "aVeryLongSecretEncrypted"
NOW = 1_800_000_000.0


def test_round_trip_keeps_claims() -> None:
    token, claims = issue_token(
        SECRET, user="amedeo.setti", workspace="amedeo.setti", token_id="1", now=NOW
    )
    back = verify_token(SECRET, token, now=NOW + 3600)
    assert back == claims
    assert back.expires_at is None
    assert back.kind == "user"


def test_each_token_gets_its_own_jti() -> None:
    _, a = issue_token(SECRET, user="u", workspace="u", token_id="1", now=NOW)
    _, b = issue_token(SECRET, user="u", workspace="u", token_id="1", now=NOW)
    assert a.jti != b.jti


def test_expired_token_is_refused() -> None:
    token, _ = issue_token(SECRET, user="u", workspace="u", token_id="1", now=NOW, ttl_s=60)
    assert verify_token(SECRET, token, now=NOW + 59).user == "u"
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(SECRET, token, now=NOW + 120)


def test_other_secret_is_refused() -> None:
    token, _ = issue_token(SECRET, user="u", workspace="u", token_id="1", now=NOW)
    with pytest.raises(InvalidToken, match="signature"):
        verify_token("anotherLongSecretValue!", token, now=NOW)


def _tamper(token: str, **changes: object) -> str:
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(changes)
    raw = json.dumps(payload).encode()
    return ".".join([head, base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), sig])


def test_tampered_claims_are_refused() -> None:
    token, _ = issue_token(SECRET, user="u", workspace="u", token_id="1", now=NOW)
    with pytest.raises(InvalidToken):
        verify_token(SECRET, _tamper(token, sub="admin"), now=NOW)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z"])
def test_garbage_is_malformed(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(SECRET, garbage, now=NOW)


def test_alg_none_is_refused() -> None:
    head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = (
        base64.urlsafe_b64encode(json.dumps({"sub": "admin", "jti": "x", "iat": int(NOW)}).encode())
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(InvalidToken):
        verify_token(SECRET, f"{head}.{body}.", now=NOW)


def test_ticket_carries_its_scope() -> None:
    token, _ = issue_token(
        SECRET,
        user="u",
        workspace="w",
        token_id="",
        now=NOW,
        ttl_s=5,
        kind="ticket",
        scope="Container/z/w/job.1",
    )
    claims = verify_token(SECRET, token, now=NOW + 1)
    assert (claims.kind, claims.scope) == ("ticket", "Container/z/w/job.1")


def test_short_secret_is_refused_with_advice() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        check_secret("short")


def test_fingerprint_is_stable_and_hides_token() -> None:
    token, _ = issue_token(SECRET, user="u", workspace="u", token_id="1", now=NOW)
    assert fingerprint(token) == fingerprint(token)
    assert len(fingerprint(token)) == 12
    assert fingerprint(token) not in token
