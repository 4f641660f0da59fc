"""Resource listings answered from memory while the database has not changed.

``GET /v1/resources/{kind}`` is what dashboards, ``watch dora get wk`` and the web UI
repeat, and most of its cost is the framework, not the data: a list of 20 workloads
took ~2.7 ms of server CPU, of which reading SQLite was ~0.3 ms. `ListCacheMiddleware`
sits in front of FastAPI and answers that route itself:

1. it authenticates the caller with the same `authenticate` (ban, token, revocation,
   expiry, rate limit) and checks the same permission (`list_scope`). The decision
   for a (token, listing) pair is remembered (`Decisions`) only while the identity
   view it came from stands: any user, role or token applied, revoked or deleted, on
   this replica or read from the feed, voids every remembered one, and so does the
   token's expiry; the address ban and the rate limit still run on every request.
   A cached body never stands in for an authorization decision;
2. it keys the body by what the listing reads (kind, zone and workspace filters, the
   caller's visible scopes), so callers with the same view share an entry;
3. it serves the entry only while the store's `generation()` is the one the entry
   was read at: SQLite's ``data_version``, which changes with any commit of any
   process on the file (another replica, the scheduler, a node report). So a
   listing is never staler than the database, across replicas too; any write
   anywhere simply makes the next listing read the store again.

Not cached: kinds whose view depends on the clock (a Node's READY comes from the age
of its last report) and the read-only hardware views. Everything this module does
not recognise exactly (another route, an unknown query parameter, a duplicated one, a
value FastAPI would refuse, no token) goes to FastAPI untouched, before anything is
counted against the caller. A ``Cache-Control: no-cache`` (or ``no-store``) request is
read from the store whatever the cache holds. A read from SQLite renders the stored
JSON text of each record as it is (`SqliteStore.list_rows`, `views.row_json`), not
decoded and encoded again: a third of the route's cost. Answers carry
``X-Dora-List-Cache: hit`` or ``miss``. ``DORA_API_LIST_CACHE=off`` turns it off;
stores without a generation (Cassandra) never use it.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import parse_qsl

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from dora.api.context import ApiContext
from dora.api.deps import admit, authenticate, bearer_from_header, rate_key
from dora.api.errors import ApiError, error_response
from dora.api.schemas import ResourceList
from dora.api.services.resources import ListScope, list_in_scope, list_scope, visible
from dora.api.services.views import record_out, row_json
from dora.model import KindInfo, resolve_kind
from dora.model.errors import UnknownKindError

log = logging.getLogger("dora.api")

PREFIX = "/v1/resources/"
ROUTE = SimpleNamespace(path_format="/v1/resources/{kind}")
"""What the request metrics label these answers with (the route FastAPI would match)."""

MAX_TEXT = 253
"""zone and workspace longer than this are FastAPI's to refuse (422)."""

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
"""What pydantic reads as a bool in a query string; anything else is FastAPI's 422."""

HIT, MISS = b"hit", b"miss"
"""``X-Dora-List-Cache`` values."""

CLOCK_DEPENDENT = frozenset({"Node"})
"""Kinds whose view changes with time alone (`views.node_status`)."""


@dataclass(frozen=True)
class ListQuery:
    kind: str
    zone: str | None = None
    workspace: str | None = None
    all_workspaces: bool = False


@functools.lru_cache(maxsize=1024)
def parse_list_request(path: str, query_string: bytes) -> ListQuery | None:
    """The listing a request asks for, if it is exactly one this module answers;
    None sends it to FastAPI (which also gives the errors). Remembered: clients repeat
    the same few listings."""
    if not path.startswith(PREFIX):
        return None
    kind = path[len(PREFIX) :]
    if not kind or "/" in kind:
        return None
    # As Starlette reads a query string (latin-1, then percent-decoding as UTF-8).
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name in seen or name not in ("zone", "workspace", "all"):
            return None
        seen[name] = value
    zone, workspace = seen.get("zone"), seen.get("workspace")
    if any(text is not None and len(text) > MAX_TEXT for text in (zone, workspace)):
        return None
    flag = seen.get("all", "false").lower()
    if flag not in _TRUE and flag not in _FALSE:
        return None
    return ListQuery(kind, zone, workspace, flag in _TRUE)


@functools.lru_cache(maxsize=256)
def cacheable_kind(text: str) -> KindInfo | None:
    try:
        info = resolve_kind(text)
    except UnknownKindError:
        return None
    if info.readonly or info.name in CLOCK_DEPENDENT:
        return None
    return info


CacheKey = tuple[str, str | None, str | None, tuple[tuple[str, str], ...] | None]


def cache_key(info: KindInfo, scope: ListScope) -> CacheKey:
    return (info.name, scope.zone, scope.workspace, scope.scopes)


class ListCache:
    """Listing bodies of one store generation, least recently used dropped first.
    A new generation empties it: every entry of an older one is stale."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.generation: int | None = None
        self._bodies: OrderedDict[CacheKey, bytes] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._bodies)

    def _enter(self, generation: int) -> None:
        if generation != self.generation:
            self._bodies.clear()
            self._bytes = 0
            self.generation = generation

    def get(self, key: CacheKey, generation: int) -> bytes | None:
        self._enter(generation)
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
        return body

    def put(self, key: CacheKey, generation: int, body: bytes) -> None:
        """Keep `body`, read at `generation`, unless the store has moved on since."""
        if generation != self.generation or len(body) > self.max_bytes // 4:
            return
        old = self._bodies.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._bodies[key] = body
        self._bytes += len(body)
        while len(self._bodies) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._bodies.popitem(last=False)
            self._bytes -= len(dropped)


@dataclass(frozen=True, slots=True)
class Decision:
    """What one token may see of one listing, as decided at an identity `version`."""

    version: int
    valid_until: float
    """The token's own end (`Identity.valid_until`)."""
    rate_key: str
    listing: ListScope
    key: CacheKey


class Decisions:
    """Authorisation decisions by (token text, listing), kept while the identity view
    they were made from stands (`Identity.version`: any user, role or token applied,
    revoked or deleted voids them all) and the token has not expired. Failures are
    never kept: each goes through `authenticate` and counts towards the ban. Bounded:
    past `max_entries` it starts over."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._by_request: dict[tuple[str, ListQuery], Decision] = {}

    def get(self, token: str, query: ListQuery, version: int, now: float) -> Decision | None:
        decision = self._by_request.get((token, query))
        if decision is None or decision.version != version or now >= decision.valid_until:
            return None
        return decision

    def put(self, token: str, query: ListQuery, decision: Decision) -> None:
        if len(self._by_request) >= self.max_entries:
            self._by_request.clear()
        self._by_request[(token, query)] = decision

    def __len__(self) -> int:
        return len(self._by_request)


def _credentials(scope: Scope) -> tuple[str | None, bool]:
    """The bearer token (of the first Authorization header, as Starlette reads it)
    and whether the client asked for a fresh answer, in one pass over the headers."""
    authorization: bytes | None = None
    fresh = False
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value
        elif name == b"cache-control" and (b"no-cache" in value or b"no-store" in value):
            fresh = True
    token = bearer_from_header(authorization.decode("latin-1")) if authorization else None
    return token, fresh


class ListCacheMiddleware:
    """ASGI middleware: answers the listings `parse_list_request` recognises, from
    `ListCache` while `generation()` says the store is unchanged (module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        ctx: ApiContext,
        generation: Callable[[], int | None],
        cache: ListCache | None = None,
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.generation = generation
        self.cache = cache or ListCache()
        self.decisions = Decisions()
        self._counted = ctx.metrics.stats.list_cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        query = parse_list_request(scope["path"], scope["query_string"])
        info = cacheable_kind(query.kind) if query is not None else None
        token, fresh = _credentials(scope) if info is not None else (None, False)
        # No token: FastAPI's route gives the 401 (and counts it).
        if query is None or info is None or token is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = ROUTE
        # From here on this request is answered here: the caller has been counted.
        try:
            listing, key = await self._decide(scope, token, query, info)
            generation = self.generation()
            body = None
            if generation is not None and not fresh:
                body = self.cache.get(key, generation)
            outcome = HIT
            if body is None:
                outcome = MISS
                body = await self._read(info, listing)
                if generation is not None:
                    self.cache.put(key, generation, body)
        except ApiError as exc:
            await error_response(exc)(scope, receive, send)
            return
        except Exception:
            # Nothing is sent yet: FastAPI's route answers instead, and renders what
            # goes wrong (a store that fails, say) as every other route does.
            log.warning("event=list_cache_error path=%s", scope["path"], exc_info=True)
            await self.app(scope, receive, send)
            return
        self._counted["hit" if outcome is HIT else "miss"] += 1
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-dora-list-cache", outcome),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _decide(
        self, scope: Scope, token: str, query: ListQuery, info: KindInfo
    ) -> tuple[ListScope, CacheKey]:
        """Who the token is and what of the listing it may see, with the ban and the
        rate limit: from `Decisions` while the identity view and the token stand, else
        worked out (and remembered) as FastAPI's route would."""
        ctx = self.ctx
        identity = ctx.identity
        known = self.decisions.get(token, query, identity.version, ctx.clock())
        if known is not None:
            admit(scope, ctx, known.rate_key)
            return known.listing, known.key
        version = identity.version  # before any await: a change meanwhile voids it
        caller = await authenticate(HTTPConnection(scope), ctx, token)
        listing = list_scope(ctx, caller, info, query.zone, query.workspace, query.all_workspaces)
        key = cache_key(info, listing)
        decision = Decision(version, identity.valid_until(caller), rate_key(caller), listing, key)
        self.decisions.put(token, query, decision)
        return listing, key

    async def _read(self, info: KindInfo, listing: ListScope) -> bytes:
        """The listing as the FastAPI route renders it (`routers.resources.list_`);
        from the stored JSON text as it is where the store can give it (SQLite)."""
        now, ready_s = self.ctx.clock(), self.ctx.settings.node_ready_s
        list_rows = getattr(self.ctx.store, "list_rows", None)
        if list_rows is None:
            records = await list_in_scope(self.ctx, info, listing)
            out = ResourceList.model_construct(
                items=[record_out(r, now=now, ready_s=ready_s) for r in records]
            )
            return out.__pydantic_serializer__.to_json(out)
        rows = await list_rows(info.name, zone=listing.zone, workspace=listing.workspace)
        items = ",".join(
            row_json(row, now=now, ready_s=ready_s)
            for row in rows
            if visible(listing, row[1], row[2])
        )
        return f'{{"items":[{items}]}}'.encode()
