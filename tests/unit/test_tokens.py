"""Tokens: signed, expiring, scoped, never trusted when tampered with."""

from __future__ import annotations

import base64
import json

import pytest

from dora.auth import (
    InvalidToken,
    TokenVerifier,
    check_secret,
    fingerprint,
    issue_token,
    verify_token,
)

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


def test_verifier_remembers_a_verified_token_and_still_checks_expiry() -> None:
    verifier = TokenVerifier(SECRET)
    token, claims = issue_token(SECRET, user="u", workspace="u", token_id="1", now=NOW, ttl_s=60)
    assert verifier.verify(token, now=NOW) == claims
    assert len(verifier) == 1
    assert verifier.verify(token, now=NOW + 59) == claims  # from the memo
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token, now=NOW + 120)


def test_verifier_never_trusts_a_token_that_differs_from_a_remembered_one() -> None:
    verifier = TokenVerifier(SECRET)
    token, _ = issue_token(SECRET, user="u", workspace="u", token_id="1", now=NOW)
    verifier.verify(token, now=NOW)
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for forged in (f"{head}.{forged_payload}.{signature}", token[:-2] + "xx"):
        with pytest.raises(InvalidToken):
            verifier.verify(forged, now=NOW)
    assert len(verifier) == 1  # failures are not remembered


def test_verifier_refuses_tokens_of_another_secret() -> None:
    token, _ = issue_token(
        "another-long-secret-value", user="u", workspace="u", token_id="1", now=NOW
    )
    with pytest.raises(InvalidToken, match="signature"):
        TokenVerifier(SECRET).verify(token, now=NOW)


def test_verifier_keeps_at_most_its_size_oldest_first() -> None:
    verifier = TokenVerifier(SECRET, size=3)
    tokens = [
        issue_token(SECRET, user=f"u{i}", workspace="u", token_id="1", now=NOW)[0] for i in range(5)
    ]
    for token in tokens:
        verifier.verify(token, now=NOW)
    assert len(verifier) == 3
    assert list(verifier._verified) == tokens[2:]
