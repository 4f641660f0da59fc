"""Container tokens (`dora.auth.container_tokens`): bound, short-lived, single use, and
never interchangeable with API tokens or node tickets."""

from __future__ import annotations

import pytest

from dora.auth import InvalidToken, issue_token, verify_token
from dora.auth.container_tokens import (
    ContainerRef,
    InvalidContainerToken,
    UsedOnce,
    issue_container_token,
    verify_container_token,
)
from dora.auth.tickets import InvalidTicket, signing_key, verify_ticket

SECRET = "a-long-enough-test-secret"
REF = ContainerRef("z1", "team", "job.1", "u" * 32)
NOW = 1_000_000.0


def make(**kwargs: object) -> str:
    options: dict[str, object] = {"user": "alice", "token_jti": "parent", "container": REF}
    options.update(kwargs)
    token, _ = issue_container_token(SECRET, now=NOW, **options)  # type: ignore[arg-type]
    return token


def test_round_trip_names_user_parent_token_and_container() -> None:
    token, claims = issue_container_token(
        SECRET, user="alice", token_jti="parent", container=REF, now=NOW, ttl_s=30
    )
    got = verify_container_token(SECRET, token, now=NOW + 29.9)
    assert got == claims
    assert (got.user, got.token_jti, got.container) == ("alice", "parent", REF)
    assert got.expires_at == NOW + 30
    assert token.startswith("eyJ")  # JWT-shaped: the API's log filter masks it


def test_expiry_has_no_leeway() -> None:
    token = make(ttl_s=2)
    verify_container_token(SECRET, token, now=NOW + 1.99)
    with pytest.raises(InvalidContainerToken, match="expired"):
        verify_container_token(SECRET, token, now=NOW + 2)


def test_other_secrets_and_garbage_are_refused() -> None:
    with pytest.raises(InvalidContainerToken, match="bad signature"):
        verify_container_token("another-long-test-secret", make(), now=NOW)
    with pytest.raises(InvalidContainerToken, match="malformed"):
        verify_container_token(SECRET, "not.a.token", now=NOW)


def test_api_tokens_and_container_tokens_never_pass_for_each_other() -> None:
    api_token, _ = issue_token(SECRET, user="alice", workspace="team", token_id="1", now=NOW)
    with pytest.raises(InvalidContainerToken, match="bad signature"):
        verify_container_token(SECRET, api_token, now=NOW)
    with pytest.raises(InvalidToken, match="bad signature"):
        verify_token(SECRET, make(), now=NOW)
    with pytest.raises(InvalidTicket):
        verify_ticket([signing_key(SECRET).public_key()], make(), zone="z1", node="n1", now=NOW)


def test_used_once_refuses_a_second_redemption_until_it_expires() -> None:
    used = UsedOnce()
    assert used.redeem("a", NOW + 30, NOW)
    assert not used.redeem("a", NOW + 30, NOW + 1)
    assert used.redeem("b", NOW + 31, NOW + 1)
    assert len(used) == 2
    used.redeem("c", NOW + 100, NOW + 40)  # a and b have expired: forgotten
    assert len(used) == 1


def test_used_once_is_bounded() -> None:
    used = UsedOnce(max_tracked=3)
    for index in range(10):
        assert used.redeem(f"j{index}", NOW + 30, NOW)
    assert len(used) <= 3
    assert not used.redeem("j9", NOW + 30, NOW)
