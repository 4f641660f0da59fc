"""API tokens: HS256-signed JWTs that can expire and be revoked.

A token names a user, the user's default workspace and a token id (the seed's
``dora token create USER WORKSPACE ID``: the id tells one user's tokens apart). Each
token also carries a random ``jti``; the server keeps the jti of every live token, so
revoking a token, or deleting its user, makes it fail at once even though its
signature stays valid. The signing secret never leaves the server, and tokens never
go into logs: log `fingerprint(token)` instead.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import jwt

ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 16
CLOCK_SKEW_S = 5
"""Leeway when checking expiry, for API replicas whose clocks differ slightly."""

TokenKind = Literal["user", "ticket"]


class InvalidToken(Exception):
    """The token cannot be trusted; `reason` says why (never includes the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenClaims:
    user: str
    workspace: str
    """The user's default workspace for requests that name none."""
    token_id: str
    jti: str
    issued_at: int
    expires_at: int | None
    kind: TokenKind = "user"
    scope: str = ""
    """For tickets: the one thing the ticket opens (e.g. a container key)."""


def _signing_key(secret: str) -> bytes:
    """A 32-byte HMAC key derived from the admin's secret (which may be shorter), so
    the operator's secret itself is never used as a raw key."""
    return hashlib.sha256(b"dora.tokens.v1\0" + secret.encode()).digest()


def check_secret(secret: str) -> None:
    """Refuse secrets too short to sign anything worth trusting."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"the API secret must be at least {MIN_SECRET_LENGTH} characters long "
            f"(got {len(secret)}); set a long random value in the `secret` variable"
        )


def issue_token(
    secret: str,
    *,
    user: str,
    workspace: str,
    token_id: str,
    now: float,
    ttl_s: float | None = None,
    kind: TokenKind = "user",
    scope: str = "",
    jti: str | None = None,
) -> tuple[str, TokenClaims]:
    """Sign a new token; returns it with its claims (store the claims' jti)."""
    check_secret(secret)
    claims = TokenClaims(
        user=user,
        workspace=workspace,
        token_id=token_id,
        jti=jti or secrets.token_hex(16),
        issued_at=int(now),
        expires_at=None if ttl_s is None else int(now + ttl_s),
        kind=kind,
        scope=scope,
    )
    payload: dict[str, Any] = {
        "sub": claims.user,
        "ws": claims.workspace,
        "tid": claims.token_id,
        "jti": claims.jti,
        "iat": claims.issued_at,
        "typ": claims.kind,
    }
    if claims.scope:
        payload["scp"] = claims.scope
    if claims.expires_at is not None:
        payload["exp"] = claims.expires_at
    return jwt.encode(payload, _signing_key(secret), algorithm=ALGORITHM), claims


def verify_token(secret: str, token: str, *, now: float) -> TokenClaims:
    """Check signature, shape and expiry. Revocation is the caller's next check."""
    try:
        payload = jwt.decode(
            token,
            _signing_key(secret),
            algorithms=[ALGORITHM],
            options={
                "require": ["sub", "jti", "iat"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad signature") from None
    except jwt.PyJWTError:
        raise InvalidToken("malformed token") from None
    exp = payload.get("exp")
    if exp is not None and not isinstance(exp, int):
        raise InvalidToken("token expired")
    _check_expiry(exp, now)
    kind = payload.get("typ", "user")
    fields = (payload.get("sub"), payload.get("ws", ""), payload.get("tid", ""), payload["jti"])
    if kind not in ("user", "ticket") or not all(isinstance(f, str) for f in fields):
        raise InvalidToken("malformed token")
    return TokenClaims(
        user=payload["sub"],
        workspace=payload.get("ws", ""),
        token_id=payload.get("tid", ""),
        jti=payload["jti"],
        issued_at=int(payload["iat"]),
        expires_at=exp,
        kind=kind,
        scope=str(payload.get("scp", "")),
    )


def _check_expiry(expires_at: int | None, now: float) -> None:
    if expires_at is not None and now > expires_at + CLOCK_SKEW_S:
        raise InvalidToken("token expired")


class TokenVerifier:
    """`verify_token` with one secret, remembering the tokens whose signature and
    shape it has checked, so a client's next requests skip the HMAC and JSON work.

    The memo is keyed by the whole token text, signature included: only a token that
    verified, byte for byte, is found there; anything else is verified afresh (and a
    failure is never remembered). Expiry is still checked at every call. Revocation
    is not this class's business: the caller checks the jti on every request, as
    before. At most `size` tokens are kept; the oldest go first."""

    def __init__(self, secret: str, *, size: int = 4096) -> None:
        self._secret = secret
        self._size = size
        self._verified: dict[str, TokenClaims] = {}

    def verify(self, token: str, *, now: float) -> TokenClaims:
        claims = self._verified.get(token)
        if claims is None:
            claims = verify_token(self._secret, token, now=now)
            if len(self._verified) >= self._size:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
        else:
            _check_expiry(claims.expires_at, now)
        return claims

    def __len__(self) -> int:
        return len(self._verified)


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe to log."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]
