"""Node tickets: what the API hands a node agent's :3001 server to open one container.

A ticket is a short-lived JWT signed with **Ed25519** (``EdDSA``). It names the node
(audience ``dora-node:<zone>/<node>``), the operation (``exec``, ``logs``, ``stats``),
the exact container (workspace, name and the record's uid) and, for ``exec``, the
argv and whether a TTY is wanted. The node executes what the ticket says and nothing
the client chose.

Why a key pair, and not the API's HMAC secret or an introspection call:

- The node must verify tickets without being able to mint them. With Ed25519 it only
  holds the *public* key: a node that is broken into cannot forge a ticket for
  another node (or for anything at all), and no secret travels to nodes.
- Verification is local: no round trip to the API per connection, and no API
  endpoint a node could be tricked into calling.
- Every API replica derives the same key pair from the cluster's ``secret`` (so
  replicas need no coordination); nodes learn the public key in each report reply,
  over their authenticated, TLS-verified channel to the API. Changing the secret
  rotates it: nodes pick the new key up at their next heartbeat.

Tickets live `TICKET_TTL_S` seconds (the time to *connect*; a session lasts as long as
it stays open) and nodes accept each one once (``jti``). The algorithm is pinned to
EdDSA when verifying, so an HS256 API token can never pass for a ticket, nor a ticket
for an API token.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

TICKET_TTL_S = 30.0
"""How long a ticket may be used to connect."""
CLOCK_SKEW_S = 5
ALGORITHM = "EdDSA"
TICKET_TYPE = "dora-node-ticket"

Operation = Literal["exec", "logs", "stats"]
OPERATIONS: tuple[str, ...] = ("exec", "logs", "stats")


class InvalidTicket(Exception):
    """The ticket cannot be trusted; `reason` says why (never includes the ticket)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Ticket:
    """What a verified ticket allows."""

    zone: str
    node: str
    op: str
    workspace: str
    name: str
    uid: str
    user: str
    jti: str
    expires_at: int
    argv: tuple[str, ...] = field(default=())
    tty: bool = False


# --------------------------------------------------------------------------- keys


@lru_cache(maxsize=8)
def signing_key(secret: str) -> Ed25519PrivateKey:
    """The cluster's ticket key, derived from the API secret (same on every replica)."""
    seed = hashlib.sha256(b"dora.node-tickets.v1\0" + secret.encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as base64url of its 32 raw bytes (what nodes are sent)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return _b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def public_key_for(secret: str) -> str:
    return public_key_text(signing_key(secret))


def load_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = _unb64(text.strip())
        if len(raw) != 32:
            raise ValueError("not 32 bytes")
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidTicket(f"malformed ticket key ({exc})") from None


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    return hashlib.sha256(public_key_text(key).encode()).hexdigest()[:16]


def audience(zone: str, node: str) -> str:
    return f"dora-node:{zone}/{node}"


# --------------------------------------------------------------------------- issue / verify


def issue_ticket(
    key: Ed25519PrivateKey,
    *,
    zone: str,
    node: str,
    op: Operation,
    workspace: str,
    name: str,
    uid: str,
    user: str,
    now: float,
    argv: list[str] | tuple[str, ...] = (),
    tty: bool = False,
    ttl_s: float = TICKET_TTL_S,
) -> str:
    payload: dict[str, Any] = {
        "typ": TICKET_TYPE,
        "aud": audience(zone, node),
        "sub": user,
        "jti": secrets.token_hex(16),
        "iat": int(now),
        "exp": int(now + ttl_s),
        "op": op,
        "ctr": {"ws": workspace, "name": name, "uid": uid},
    }
    if op == "exec":
        payload["argv"] = list(argv)
        payload["tty"] = bool(tty)
    return jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": key_id(key)})


def verify_ticket(
    keys: list[Ed25519PublicKey], token: str, *, zone: str, node: str, now: float
) -> Ticket:
    """Check signature (EdDSA only, with one of `keys`), audience (this node), expiry
    and shape. Single use is the caller's next check (`Ticket.jti`)."""
    if not keys:
        raise InvalidTicket("this node has no ticket key yet (it has not reported to the API)")
    payload: dict[str, Any] | None = None
    for key in keys:
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience(zone, node),
                options={
                    "require": ["aud", "exp", "iat", "jti", "sub"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidAudienceError:
            raise InvalidTicket("ticket is for another node") from None
        except jwt.PyJWTError:
            raise InvalidTicket("malformed ticket") from None
    if payload is None:
        raise InvalidTicket("bad signature")
    exp = payload.get("exp")
    if not isinstance(exp, int) or now > exp + CLOCK_SKEW_S:
        raise InvalidTicket("ticket expired")
    ctr = payload.get("ctr")
    op = payload.get("op")
    if (
        payload.get("typ") != TICKET_TYPE
        or op not in OPERATIONS
        or not isinstance(ctr, dict)
        or not all(isinstance(ctr.get(k), str) and ctr.get(k) for k in ("ws", "name", "uid"))
        or not isinstance(payload.get("sub"), str)
        or not isinstance(payload.get("jti"), str)
    ):
        raise InvalidTicket("malformed ticket")
    argv: tuple[str, ...] = ()
    if op == "exec":
        raw = payload.get("argv")
        if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
            raise InvalidTicket("malformed ticket (argv)")
        argv = tuple(raw)
    return Ticket(
        zone=zone,
        node=node,
        op=str(op),
        workspace=ctr["ws"],
        name=ctr["name"],
        uid=ctr["uid"],
        user=payload["sub"],
        jti=payload["jti"],
        expires_at=exp,
        argv=argv,
        tty=bool(payload.get("tty", False)),
    )
