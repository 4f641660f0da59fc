"""Node tickets (Ed25519 JWTs): what a node accepts and what it refuses."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dora.auth import issue_token, verify_token
from dora.auth.tickets import (
    InvalidTicket,
    issue_ticket,
    load_public_key,
    public_key_for,
    signing_key,
    verify_ticket,
)
from dora.auth.tokens import InvalidToken

SECRET = "aVeryLongSecretEncrypted"
NOW = 1_800_000_000.0


def _issue(key: Ed25519PrivateKey | None = None, **overrides: object) -> str:
    args: dict[str, object] = {
        "zone": "z1",
        "node": "node1",
        "op": "exec",
        "workspace": "ws",
        "name": "web.1",
        "uid": "uid-1",
        "user": "alice",
        "now": NOW,
        "argv": ["sh", "-c", "echo hi"],
        "tty": True,
    }
    args.update(overrides)
    return issue_ticket(key or signing_key(SECRET), **args)  # type: ignore[arg-type]


def _verify(token: str, *, node: str = "node1", now: float = NOW, secret: str = SECRET):  # type: ignore[no-untyped-def]
    return verify_ticket(
        [load_public_key(public_key_for(secret))], token, zone="z1", node=node, now=now
    )


def test_round_trip_names_the_container_and_command() -> None:
    ticket = _verify(_issue())
    assert (ticket.op, ticket.workspace, ticket.name, ticket.uid) == (
        "exec",
        "ws",
        "web.1",
        "uid-1",
    )
    assert ticket.argv == ("sh", "-c", "echo hi")
    assert ticket.tty is True
    assert ticket.user == "alice"
    assert ticket.expires_at == int(NOW + 30)


def test_every_api_replica_derives_the_same_key() -> None:
    assert public_key_for(SECRET) == public_key_for(str(SECRET))
    assert public_key_for(SECRET) != public_key_for(SECRET + "x")
    assert len(base64.urlsafe_b64decode(public_key_for(SECRET) + "=")) == 32


def test_ticket_for_another_node_is_refused() -> None:
    with pytest.raises(InvalidTicket, match="another node"):
        _verify(_issue(), node="node2")


def test_expired_ticket_is_refused() -> None:
    with pytest.raises(InvalidTicket, match="expired"):
        _verify(_issue(), now=NOW + 30 + 6)
    assert _verify(_issue(), now=NOW + 30 + 4)  # a few seconds of clock skew


def test_ticket_signed_by_another_key_is_refused() -> None:
    with pytest.raises(InvalidTicket, match="bad signature"):
        _verify(_issue(Ed25519PrivateKey.generate()))
    with pytest.raises(InvalidTicket, match="bad signature"):
        _verify(_issue(), secret=SECRET + "-other")


def test_tampered_claims_are_refused() -> None:
    header, payload, signature = _issue().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["ctr"]["name"] = "db.1"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidTicket, match="bad signature"):
        _verify(f"{header}.{forged}.{signature}")


def test_an_api_token_is_not_a_ticket_and_a_ticket_not_an_api_token() -> None:
    token, _ = issue_token(SECRET, user="alice", workspace="ws", token_id="1", now=NOW)
    with pytest.raises(InvalidTicket, match="malformed"):
        _verify(token)
    with pytest.raises(InvalidToken):
        verify_token(SECRET, _issue(), now=NOW)


def test_hs256_with_the_public_key_as_secret_is_refused() -> None:
    """The classic algorithm confusion: sign HS256 with the (public) key bytes."""
    payload = jwt.decode(_issue(), options={"verify_signature": False})
    public = base64.urlsafe_b64decode(public_key_for(SECRET) + "=")
    forged = jwt.encode(payload, public, algorithm="HS256")
    with pytest.raises(InvalidTicket):
        _verify(forged)


def test_none_algorithm_is_refused() -> None:
    payload = jwt.decode(_issue(), options={"verify_signature": False})
    forged = jwt.encode(payload, None, algorithm="none")
    with pytest.raises(InvalidTicket):
        _verify(forged)


def test_exec_ticket_needs_an_argv_and_no_keys_means_no_entry() -> None:
    with pytest.raises(InvalidTicket, match="argv"):
        _verify(_issue(argv=[]))
    with pytest.raises(InvalidTicket, match="no ticket key"):
        verify_ticket([], _issue(), zone="z1", node="node1", now=NOW)
    logs = _verify(_issue(op="logs", argv=[]))
    assert logs.op == "logs" and logs.argv == ()


def test_malformed_public_key_is_an_invalid_ticket() -> None:
    with pytest.raises(InvalidTicket, match="malformed ticket key"):
        load_public_key("not-a-key")
