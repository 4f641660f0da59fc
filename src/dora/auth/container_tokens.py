"""Container tokens: a short-lived, single-use pass to one container's shell WebSocket.

A browser cannot set an ``Authorization`` header on a WebSocket, so a web dashboard
first calls ``POST /v1/containers/{name}/token`` (an ordinary API request, Bearer
token, RBAC ``Container: Token``) and then opens
``WS /v1/containers/{name}/shell?token=…``.

The token is an HS256 JWT signed with a key derived from the API ``secret`` — but a
key of its own (``dora.container-tokens.v1``), with its own ``typ`` and ``aud``: an
API token never verifies as a container token, nor a container token as an API token
(the signature fails first; the type and audience are checked too). It names

* the user and the jti of the API token that asked for it (``sub``, ``tok``): when
  that token is revoked, or the user deleted, the container token fails with it;
* the exact container: zone, workspace, name and the record's uid (``ctr``): a
  container re-created under the same name is another container;
* a random ``jti``: each token opens one shell. The API keeps the jtis it redeemed
  in memory (`UsedOnce`, a free first check) and claims each one in the store
  (``Store.claim_once``), so a token redeemed on one replica or worker is refused on
  every other.

It lives `DEFAULT_TTL_S` seconds (``DORA_CONTAINER_TOKEN_TTL_S``), with no clock
leeway: a replica whose clock runs ahead only shortens a token's life.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from dora.auth.tokens import check_secret

ALGORITHM = "HS256"
TOKEN_TYPE = "dora-container-token"
AUDIENCE = "dora-container-shell"
DEFAULT_TTL_S = 30.0
MAX_TTL_S = 300.0


class InvalidContainerToken(Exception):
    """The token cannot be trusted; `reason` says why (never includes the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ContainerRef:
    """Exactly one container: a record of this name and uid in this zone and workspace."""

    zone: str
    workspace: str
    name: str
    uid: str


@dataclass(frozen=True)
class ContainerClaims:
    user: str
    token_jti: str
    """The API token the container token was asked for with."""
    container: ContainerRef
    jti: str
    issued_at: float
    expires_at: float


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"dora.container-tokens.v1\0" + secret.encode()).digest()


def issue_container_token(
    secret: str,
    *,
    user: str,
    token_jti: str,
    container: ContainerRef,
    now: float,
    ttl_s: float = DEFAULT_TTL_S,
) -> tuple[str, ContainerClaims]:
    check_secret(secret)
    claims = ContainerClaims(
        user=user,
        token_jti=token_jti,
        container=container,
        jti=secrets.token_hex(16),
        issued_at=now,
        expires_at=now + ttl_s,
    )
    payload: dict[str, Any] = {
        "typ": TOKEN_TYPE,
        "aud": AUDIENCE,
        "sub": user,
        "tok": token_jti,
        "jti": claims.jti,
        "iat": now,
        "exp": claims.expires_at,
        "ctr": {
            "zone": container.zone,
            "ws": container.workspace,
            "name": container.name,
            "uid": container.uid,
        },
    }
    return jwt.encode(payload, _key(secret), algorithm=ALGORITHM), claims


def verify_container_token(secret: str, token: str, *, now: float) -> ContainerClaims:
    """Signature (this purpose's key, HS256 only), audience, type, shape and expiry.
    Single use is the caller's next check (`UsedOnce`)."""
    try:
        payload = jwt.decode(
            token,
            _key(secret),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={
                "require": ["aud", "exp", "iat", "jti", "sub"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise InvalidContainerToken("bad signature (not a container token)") from None
    except jwt.PyJWTError:
        raise InvalidContainerToken("malformed container token") from None
    exp, iat, ctr = payload.get("exp"), payload.get("iat"), payload.get("ctr")
    strings = (payload.get("sub"), payload.get("tok"), payload.get("jti"))
    if (
        payload.get("typ") != TOKEN_TYPE
        or not isinstance(exp, int | float)
        or not isinstance(iat, int | float)
        or not all(isinstance(s, str) and s for s in strings)
        or not isinstance(ctr, dict)
        or not all(isinstance(ctr.get(k), str) for k in ("zone", "ws", "name", "uid"))
    ):
        raise InvalidContainerToken("malformed container token")
    if now >= exp:
        raise InvalidContainerToken("container token expired")
    return ContainerClaims(
        user=payload["sub"],
        token_jti=payload["tok"],
        container=ContainerRef(ctr["zone"], ctr["ws"], ctr["name"], ctr["uid"]),
        jti=payload["jti"],
        issued_at=float(iat),
        expires_at=float(exp),
    )


class UsedOnce:
    """The jtis redeemed so far, each kept until it expires (then it fails anyway).

    Memory is bounded: expired entries go first; beyond `max_tracked` live entries the
    oldest is dropped (only a flood of fresh tokens could get there, and each of them
    still needs the Shell verb when it is used)."""

    def __init__(self, max_tracked: int = 100_000) -> None:
        self._max = max_tracked
        self._until: OrderedDict[str, float] = OrderedDict()

    def redeem(self, jti: str, expires_at: float, now: float) -> bool:
        """True the first time `jti` is redeemed, False every later time."""
        while self._until:
            oldest, until = next(iter(self._until.items()))
            if until > now and len(self._until) < self._max:
                break
            del self._until[oldest]
        if jti in self._until:
            return False
        self._until[jti] = expires_at
        return True

    def __len__(self) -> int:
        return len(self._until)
