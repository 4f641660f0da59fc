"""Who is calling: token verification backed by an in-memory view of users, roles and
live tokens, kept current from the store's global change feed.

Verifying a request costs a signature check and a few dict lookups; the store is
read only when a token is not in the cache yet (e.g. created a moment ago on another
API replica). Revoking a token or deleting a user removes it from every replica's
cache as soon as that replica reads the feed (milliseconds), and at once on the
replica that made the change.

A read of the store can be overtaken: the feed follower reads a token record, the
token is revoked on this replica meanwhile, and the read comes back with the token
still in it. A read therefore only counts when nothing was applied to that key (or,
for a full reload, to any key) while it was in flight; otherwise it is made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dora.api.errors import ApiError, forbidden, unauthorized
from dora.auth import (
    ALL,
    Action,
    Grant,
    InvalidToken,
    Permissions,
    TokenClaims,
    TokenVerifier,
    decide,
)
from dora.store import CursorExpired, Key, NotFound, Record, Store

log = logging.getLogger("dora.api.identity")

TOKEN_KIND = "Token"
"""Internal kind: one record per issued token, named by its jti, parent = its user."""
GLOBAL = ""


REREADS = 5
"""Tries of a read that keeps being overtaken by records applied meanwhile."""


def token_key(jti: str) -> Key:
    return Key(TOKEN_KIND, GLOBAL, GLOBAL, jti)


@dataclass(frozen=True)
class UserView:
    name: str
    grants: tuple[Grant, ...]
    default_zone: str | None
    default_workspace: str | None

    @classmethod
    def from_record(cls, record: Record) -> UserView:
        spec = record.spec
        grants = tuple(
            Grant(
                kind=str(r.get("kind", "")),
                zone=str(r.get("zone", ALL)),
                workspace=str(r.get("workspace", ALL)),
                role=str(r.get("role", "")),
            )
            for r in spec.get("resources") or []
        )
        default = spec.get("default") or {}
        return cls(record.key.name, grants, default.get("zone"), default.get("workspace"))


@dataclass(frozen=True)
class TokenInfo:
    jti: str
    user: str
    token_id: str
    expires_at: float | None

    @classmethod
    def from_record(cls, record: Record) -> TokenInfo:
        exp = record.spec.get("expires_at")
        return cls(
            jti=record.key.name,
            user=str(record.spec.get("user", "")),
            token_id=str(record.spec.get("id", "")),
            expires_at=float(exp) if exp is not None else None,
        )


@dataclass
class Caller:
    """The authenticated user of one request and what they may do."""

    user: UserView
    claims: TokenClaims
    roles: dict[str, Permissions] = field(repr=False)

    @property
    def name(self) -> str:
        return self.user.name

    def default_workspace(self) -> str:
        return self.claims.workspace or self.user.default_workspace or self.user.name

    def allowed(self, kind: str, verb: str, zone: str, workspace: str) -> bool:
        return bool(decide(self.user.grants, self.roles, Action(kind, verb, zone, workspace)))

    def require(self, kind: str, verb: str, zone: str, workspace: str) -> None:
        """Raise 403 unless a grant allows `verb` on `kind` in exactly this scope."""
        if not self.allowed(kind, verb, zone, workspace):
            where = ", ".join(
                f"{label} {value}"
                for label, value in (("zone", zone), ("workspace", workspace))
                if value
            )
            raise forbidden(
                f"user {self.name} may not {verb} {kind}" + (f" in {where}" if where else "")
            )


class Identity:
    """Users, roles and live tokens of the cluster, as one API replica sees them."""

    def __init__(
        self, store: Store, secret: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._verifier = TokenVerifier(secret)
        self._clock = clock
        self.users: dict[str, UserView] = {}
        self.roles: dict[str, Permissions] = {}
        self.tokens: dict[str, TokenInfo] = {}
        self._cursor: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.version = 0
        """Goes up with every record applied and every reload: a decision made from
        this view (who a token is, what its user may do) holds while it stands."""
        self._reading: dict[Key, list[int]] = {}
        """Keys with a read in flight: [reads, records applied to the key meanwhile]."""

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._follow(), name="identity-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def reload(self) -> None:
        """Full load; also the recovery path when the feed cursor expired. Made again
        when a record was applied while it read (that change may be missing from it)."""
        for _ in range(REREADS):
            applied = self.version
            cursor = await self._store.head(GLOBAL)
            users = await self._store.list_records("User", zone=GLOBAL, workspace=GLOBAL)
            roles = await self._store.list_records("Role", zone=GLOBAL, workspace=GLOBAL)
            tokens = await self._store.list_records(TOKEN_KIND, zone=GLOBAL, workspace=GLOBAL)
            if self.version == applied:
                break
        # Else still the newest read: the feed from its cursor replays what came after.
        self.users = {r.key.name: UserView.from_record(r) for r in users}
        self.roles = {r.key.name: _permissions(r) for r in roles}
        self.tokens = {r.key.name: TokenInfo.from_record(r) for r in tokens}
        self._cursor = cursor
        self.version += 1

    async def _follow(self) -> None:
        while True:
            try:
                assert self._cursor is not None
                changes = await self._store.wait_changes(GLOBAL, after=self._cursor, max_wait=5.0)
                for change in changes:
                    await self.refresh(change.key)
                    self._cursor = change.cursor
            except CursorExpired:
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event=identity_feed_error")
                await asyncio.sleep(1.0)

    async def refresh(self, key: Key) -> None:
        """Re-read one user, role or token record (or forget it when deleted). A read
        overtaken by a newer record applied to the key is dropped and made again; if
        every try is overtaken, the records applied meanwhile stand."""
        if key.kind not in ("User", "Role", TOKEN_KIND):
            return
        slot = self._reading.setdefault(key, [0, 0])
        slot[0] += 1
        try:
            for _ in range(REREADS):
                seen = slot[1]
                try:
                    record: Record | None = await self._store.get(key)
                except NotFound:
                    record = None
                if slot[1] == seen:
                    self.apply_record(key, record)
                    return
        finally:
            slot[0] -= 1
            if not slot[0]:
                del self._reading[key]

    def apply_record(self, key: Key, record: Record | None) -> None:
        """Take `record` (None: deleted) as the key's current state, at once."""
        self.version += 1
        reading = self._reading.get(key)
        if reading is not None:
            reading[1] += 1
        if key.kind == "User":
            if record is None:
                self.users.pop(key.name, None)
            else:
                self.users[key.name] = UserView.from_record(record)
        elif key.kind == "Role":
            if record is None:
                self.roles.pop(key.name, None)
            else:
                self.roles[key.name] = _permissions(record)
        elif key.kind == TOKEN_KIND:
            if record is None:
                self.tokens.pop(key.name, None)
            else:
                self.tokens[key.name] = TokenInfo.from_record(record)

    async def authenticate(self, token: str) -> Caller:
        """Verify `token` and return the caller, or raise 401 with the reason."""
        now = self._clock()
        try:
            claims = self._verifier.verify(token, now=now)
        except InvalidToken as exc:
            raise unauthorized(f"invalid token: {exc.reason}") from None
        if claims.kind != "user":
            raise unauthorized("invalid token: this is a ticket, not an API token")
        info = self.tokens.get(claims.jti)
        if info is None:
            # Maybe issued a moment ago by another replica: ask the store once.
            await self.refresh(token_key(claims.jti))
            info = self.tokens.get(claims.jti)
        if info is None or info.user != claims.user:
            raise unauthorized("invalid token: revoked")
        if info.expires_at is not None and now > info.expires_at:
            raise unauthorized("invalid token: token expired")
        user = self.users.get(claims.user)
        if user is None:
            await self.refresh(Key("User", GLOBAL, GLOBAL, claims.user))
            user = self.users.get(claims.user)
        if user is None:
            raise unauthorized(f"invalid token: user {claims.user} no longer exists")
        return Caller(user=user, claims=claims, roles=self.roles)

    def valid_until(self, caller: Caller) -> float:
        """When `caller`'s token stops working by itself (its own expiry or its
        record's), as `authenticate` judges it; infinity for a token without one."""
        info = self.tokens.get(caller.claims.jti)
        ends: list[float | None] = [
            caller.claims.expires_at,
            info.expires_at if info is not None else 0.0,
        ]
        return min((float(end) for end in ends if end is not None), default=math.inf)

    async def delegated(self, user: str, token_jti: str, workspace: str) -> Caller:
        """The caller of a container token: `user`, as long as the API token it was
        asked for with (`token_jti`) is still live and the user still exists (401
        otherwise). `workspace` becomes the caller's default for the request."""
        info = self.tokens.get(token_jti)
        if info is None:
            await self.refresh(token_key(token_jti))
            info = self.tokens.get(token_jti)
        if info is None or info.user != user:
            raise unauthorized("invalid container token: the API token it came from is revoked")
        now = self._clock()
        if info.expires_at is not None and now > info.expires_at:
            raise unauthorized("invalid container token: the API token it came from expired")
        view = self.users.get(user)
        if view is None:
            await self.refresh(Key("User", GLOBAL, GLOBAL, user))
            view = self.users.get(user)
        if view is None:
            raise unauthorized(f"invalid container token: user {user} no longer exists")
        claims = TokenClaims(
            user=user,
            workspace=workspace,
            token_id=info.token_id,
            jti=token_jti,
            issued_at=int(now),
            expires_at=None if info.expires_at is None else int(info.expires_at),
        )
        return Caller(user=view, claims=claims, roles=self.roles)


def _permissions(record: Record) -> Permissions:
    permission: dict[str, Any] = record.spec.get("permission") or {}
    return Permissions.from_spec({k: [str(v) for v in vs or []] for k, vs in permission.items()})


__all__ = [
    "TOKEN_KIND",
    "ApiError",
    "Caller",
    "Identity",
    "TokenInfo",
    "UserView",
    "token_key",
]
