"""The Store protocol: the one contract every state backend (SQLite, CQL) implements.

Semantics are defined here, once, and checked by `tests/conformance/`, which runs
unchanged against every backend. Nothing in this module does I/O.

Records
    One record per resource, addressed by a `Key` (kind, zone, workspace, name).
    Global kinds use ``zone=""``; kinds without a workspace use ``workspace=""``.
    A record has four parts with one writer each (docs/architecture.md):

    ========  ==================================  ===========================
    part      content                             writer
    ========  ==================================  ===========================
    spec      the applied YAML spec (+ ``meta``)  API (user apply)
    desired   ``run`` | ``drain`` | ``pause``     API (apply, delete, pause)
    computed  placement, reasons                  scheduler (creditsys)
    observed  what really runs                    node agent, through the API
    ========  ==================================  ===========================

    Every successful write increments ``version`` by exactly one. Updates are
    compare-and-set on ``version``: a write carrying a stale version raises
    `Conflict` and changes nothing.

Indexed columns
    ``node`` and ``parent`` are plain strings (``""`` when unset) the store indexes so
    the hot paths never scan: containers by node, containers by workload, and pending
    containers in a zone (``kind="Container"``, ``node=""``, ``desired="run"``).

Change feed
    Every create, update and delete appends one `Change` to the feed of the record's
    zone (global kinds go to the ``""`` feed), in commit order. Readers resume from an
    opaque `Cursor`; a cursor older than the feed's retention raises `CursorExpired`
    so the reader knows to resync from a full list.

History
    Spec versions are kept per resource (created, and each spec-hash change); events
    say what happened, by whom, when. Both are bounded per resource
    (`HISTORY_LIMIT`, `EVENT_LIMIT`) and deleted with the resource.

Leases
    Named leases with a holder, an expiry and a fencing token that grows every time
    the lease changes hands. A write may carry a `Fence`; the store rejects it with
    `FencedOut` when that lease is no longer held with that token.

    A lease is held while ``now < expires_at`` (the store's clock, read inside the
    write). Once expired it is gone for good: `renew_lease` fails, fences carrying its
    token are refused, and `acquire_lease` hands out a new, higher token even to the
    same holder. Holders renew well before expiry (e.g. every ttl/3). Releasing sets
    ``expires_at`` to 0 and keeps the token, so tokens are never reused.

    One-shot claims (`claim_once`) live beside the leases, named under ``once/``: the
    first claim of a name wins, every later one loses while it is live, across all
    processes on the store. Expired claims are forgotten (SQLite deletes them, CQL
    lets a row TTL drop them), so the table holds only live ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Desired = Literal["run", "drain", "pause"]
ChangeOp = Literal["create", "update", "delete"]
Cursor = str
"""Opaque, backend-specific position in a zone's change feed. Compare only by equality."""

HISTORY_LIMIT = 20
"""Spec versions kept per resource; older ones are dropped."""
EVENT_LIMIT = 200
"""Events kept per resource; older ones are dropped."""

PARTS = ("spec", "desired", "computed", "observed")
FIELDS = ("spec", "meta", "desired", "computed", "observed", "node", "parent")
"""Every writable field, in `Patch` order; `Change.parts` of a create or delete."""


# --------------------------------------------------------------------------- errors


class StoreError(Exception):
    """Base class of every store error."""


class NotFound(StoreError):
    """The record does not exist."""


class AlreadyExists(StoreError):
    """`create` found a record with the same key."""


class Conflict(StoreError):
    """Compare-and-set failed: the record changed since the caller read it."""

    def __init__(self, key: Key, expected: int, actual: int | None) -> None:
        super().__init__(f"{key}: expected version {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class FencedOut(StoreError):
    """The write carried a fencing token of a lease that has since changed hands."""


class CursorExpired(StoreError):
    """The feed no longer holds the position asked for: resync from a full list."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, order=True)
class Key:
    kind: str
    zone: str
    workspace: str
    name: str

    def __str__(self) -> str:
        scope = "/".join(p for p in (self.zone, self.workspace) if p)
        return f"{self.kind} {scope + '/' if scope else ''}{self.name}"


def spec_hash(spec: Mapping[str, Any]) -> str:
    """Hash of a spec that ignores the replica count, so scaling is not an update."""
    trimmed = {k: v for k, v in spec.items() if k != "replica"}
    blob = json.dumps(trimmed, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Record:
    """A stored record. Treat it, parts included, as read-only: a record returned by a
    write may share its dicts with what the caller gave (`NewRecord`, `Patch`,
    `Write.base`), so mutating one changes the other."""

    key: Key
    uid: str
    """Random id fixed at creation; a re-created resource gets a new one."""
    version: int
    """1 after create, +1 on every write."""
    spec: dict[str, Any]
    meta: dict[str, Any]
    desired: Desired
    computed: dict[str, Any] | None
    observed: dict[str, Any] | None
    spec_hash: str
    owner: str
    node: str
    parent: str
    created_at: float
    """Unix seconds (UTC)."""
    updated_at: float


@dataclass(frozen=True)
class NewRecord:
    """What `Store.create` needs; the store fills uid, version, hash and timestamps."""

    key: Key
    spec: dict[str, Any]
    owner: str
    meta: dict[str, Any] = field(default_factory=dict)
    desired: Desired = "run"
    computed: dict[str, Any] | None = None
    observed: dict[str, Any] | None = None
    node: str = ""
    parent: str = ""


_UNSET: Any = object()


@dataclass(frozen=True)
class Patch:
    """Parts to change in `Store.update`; fields left unset are kept as they are.

    ``computed=None`` / ``observed=None`` clear those parts; leave them unset to keep.
    """

    spec: dict[str, Any] = _UNSET
    meta: dict[str, Any] = _UNSET
    desired: Desired = _UNSET
    computed: dict[str, Any] | None = _UNSET
    observed: dict[str, Any] | None = _UNSET
    node: str = _UNSET
    parent: str = _UNSET

    def items(self) -> dict[str, Any]:
        """The fields that were set, by name."""
        return {name: value for name in FIELDS if (value := getattr(self, name)) is not _UNSET}


@dataclass(frozen=True)
class Fence:
    """Proof that the writer holds lease ``name`` with fencing token ``token``."""

    name: str
    token: int


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    token: int
    """Fencing token: strictly greater each time the lease changes holder."""
    expires_at: float

    @property
    def fence(self) -> Fence:
        return Fence(self.name, self.token)


@dataclass(frozen=True)
class Change:
    """One entry of a zone's change feed."""

    cursor: Cursor
    """Position of this entry; resuming `changes(zone, after=cursor)` starts after it."""
    op: ChangeOp
    key: Key
    version: int
    """The record's version after the write (the last version for a delete)."""
    parts: tuple[str, ...]
    """Which of spec/desired/computed/observed (and node/parent/meta) the write touched.

    For an update: the fields the `Patch` set, in `FIELDS` order (set counts as touched,
    even to an equal value). For a create or a delete: all of `FIELDS`."""
    at: float


@dataclass(frozen=True)
class SpecVersion:
    key: Key
    uid: str
    number: int
    """1 for the first spec, +1 on each spec-hash change."""
    spec: dict[str, Any]
    spec_hash: str
    actor: str
    at: float


@dataclass(frozen=True)
class Event:
    key: Key
    reason: str
    """Short CamelCase word: Created, Placed, Queued, ScaledUp, NodeLost, OOMKilled…"""
    message: str
    actor: str
    """Who caused it: a user name, ``scheduler``, ``node:<name>``, ``api``."""
    at: float


@dataclass(frozen=True)
class Write:
    """One element of `Store.batch`: a create (``new`` set), an update (``patch`` and
    ``expected_version``) or a delete (``delete=True``, ``expected_version`` optional)."""

    key: Key
    patch: Patch | None = None
    expected_version: int | None = None
    new: NewRecord | None = None
    delete: bool = False
    base: Record | None = None
    """Updates only, optional: the record as the caller read it at
    ``expected_version``, unmodified. A hint, never a condition: the update succeeds
    or fails exactly as without it, but a backend may build the returned record from
    ``base`` and the patch instead of reading it back (SQLite does, when the stored
    record still has base's uid and version; CQL ignores it)."""


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class Store(Protocol):
    """Async state store. Every method is safe to call from several processes at once."""

    async def init(self) -> None:
        """Create the schema if absent. Idempotent."""

    async def is_initialized(self) -> bool:
        """True when the schema exists (used by the API to bootstrap only once)."""

    async def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    # records ----------------------------------------------------------------
    async def create(self, new: NewRecord, *, actor: str, fence: Fence | None = None) -> Record:
        """Insert a record (version 1). Raises `AlreadyExists` if the key is taken.

        Records a spec version (number 1) and appends a ``create`` change.
        """

    async def get(self, key: Key) -> Record:
        """Return the record or raise `NotFound`."""

    async def get_many(self, keys: Sequence[Key]) -> list[Record]:
        """Records for the keys that exist, in the order given (missing ones skipped)."""

    async def update(
        self,
        key: Key,
        patch: Patch,
        *,
        expected_version: int,
        actor: str,
        fence: Fence | None = None,
    ) -> Record:
        """Compare-and-set: apply `patch` if the record is still at `expected_version`.

        Raises `NotFound`, `Conflict` (nothing written) or `FencedOut`. A patch that sets
        ``spec`` recomputes ``spec_hash`` and, when the hash changed, records a new spec
        version. Returns the record as written (version = expected_version + 1).
        """

    async def delete(
        self,
        key: Key,
        *,
        expected_version: int | None = None,
        actor: str,
        fence: Fence | None = None,
    ) -> None:
        """Remove the record with its history and events; appends a ``delete`` change.

        Raises `NotFound`, or `Conflict` when `expected_version` is given and stale.
        """

    async def batch(
        self,
        writes: Sequence[Write],
        *,
        actor: str,
        fence: Fence | None,
        events: Sequence[Event] = (),
    ) -> list[Record | None]:
        """Apply several writes atomically where the backend can (SQLite: all or none).

        Each write is checked like `create`/`update`/`delete`; the first failure raises
        and, on SQLite, nothing of the batch is kept. The fence is checked once for the
        batch. A malformed `Write` (not exactly one of create / update / delete, or a
        ``new.key`` different from ``key``) raises `ValueError` before anything is
        written. `events` are appended after the writes (same transaction on SQLite);
        an event whose record does not exist after the writes is dropped, not an error.
        Returns each write's record as written, ``None`` for deletes, in order.
        (The CQL backend documents its weaker guarantee: each write is individually
        compare-and-set.)
        """

    async def list_records(
        self,
        kind: str,
        *,
        zone: str | None = None,
        workspace: str | None = None,
        node: str | None = None,
        parent: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Records of `kind`, filtered by whichever scopes are given, ordered by key.

        ``zone=None`` / ``workspace=None`` mean every zone / every workspace. The
        (kind, zone, workspace), (kind, zone, node) and (kind, zone, workspace,
        parent) filters are served by indexes.
        """

    async def pending(self, zone: str, *, limit: int | None = None) -> list[Record]:
        """Containers of `zone` with ``desired == "run"`` and no node, oldest first."""

    # history ----------------------------------------------------------------
    async def spec_versions(self, key: Key) -> list[SpecVersion]:
        """Spec versions of the record, oldest first (at most `HISTORY_LIMIT`).

        Empty when no record has that key (history goes with the record)."""

    async def add_event(self, event: Event) -> None:
        """Append an event (kept at most `EVENT_LIMIT` per resource).

        The event belongs to the record that has ``event.key`` now; raises `NotFound`
        when there is none, so a deleted resource never collects stray events."""

    async def events(self, key: Key, *, limit: int = 50) -> list[Event]:
        """The resource's latest events, oldest first (ordered by ``at``, then by
        insertion). Empty when no record has that key."""

    async def zone_events(self, zone: str, *, since: float = 0.0, limit: int = 100) -> list[Event]:
        """Latest events of every resource in `zone` at or after `since`, oldest first."""

    # change feed ------------------------------------------------------------
    async def head(self, zone: str) -> Cursor:
        """Cursor of the newest change in `zone`'s feed (a start value if empty)."""

    async def changes(self, zone: str, *, after: Cursor | None, limit: int = 1000) -> list[Change]:
        """Changes strictly after `after` (from the oldest kept when None), in order.

        Raises `CursorExpired` if changes after `after` fell out of the retention
        window, or if `after` is not a cursor of this feed (garbage, another backend's;
        SQLite also spots one beyond the feed's end, left from a reset database). A cursor
        from `head` or from a returned `Change` never expires while nothing after it
        was trimmed, even when the zone's feed holds no rows.
        """

    async def wait_changes(
        self, zone: str, *, after: Cursor, max_wait: float, limit: int = 1000
    ) -> list[Change]:
        """Like `changes`, but waits up to `max_wait` seconds for at least one change."""

    # leases -----------------------------------------------------------------
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take the lease if free or expired (new, higher token), or renew it if
        `holder` already holds it (same token). None when someone else holds it."""

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease | None:
        """Extend a held lease; None if it expired and changed hands (or was released)."""

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease up now if still held with this token; otherwise do nothing."""

    async def get_lease(self, name: str) -> Lease | None:
        """The lease's current state (possibly expired), or None if never taken."""

    async def claim_once(self, name: str, ttl: float) -> bool:
        """True for the first claim of `name`, False for any later claim while that one
        is live (at least `ttl` seconds). Processes racing on one store: exactly one
        wins. After it expires the claim may be forgotten and `name` won again, so a
        name must mean nothing past `ttl` (the jti of a token that expires by then)."""
