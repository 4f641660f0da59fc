"""The scheduler process: one active per zone, thin around the pure decisions.

Leadership
    The active scheduler holds the store lease ``scheduler/<zone>`` and renews it every
    ttl/3, between passes and between the write batches of a long pass. Every write it
    makes carries the lease's fence, so a scheduler that lost the lease (paused,
    partitioned) cannot write anything once another took over: the store refuses with
    `FencedOut` and the old one steps down. A standby polls the lease and takes over
    within one ttl of the leader's last renewal.

A pass
    1. Reconcile each workload that changed (and, every `sweep_s`, all of them, for
       clock-driven rules: maxRunTime, lost nodes) → container creates, drains,
       deletes, releases, re-creations, and the workload's phase. Everything but
       plain creates is written now (it may free resources for step 2).
    2. Place every pending gang (all unplaced replicas of a workload, together or
       not at all) with `place_many` over the snapshot's nodes and bookings; the
       replicas created in step 1 are part of their workload's gang.
    3. Write bindings (each gang's group all or nothing, fenced, up to
       `BATCH_GROUPS` groups a transaction). A container created in this pass is
       created already bound: one write, not a create and then an update. Then write
       pending reasons and phases only when they change, and record events. Batches
       are handed to the store as they fill and awaited later (at most `IN_FLIGHT`
       outstanding), so the store commits one while the pass computes the next.
       Updates carry the snapshot's record as `Write.base`, so the store need not
       read them back.

The snapshot is refreshed from the zone's change feed between passes; the store is
never scanned inside a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Any

from dora.scheduler import adapter, collector
from dora.scheduler.placement import ClusterState, place_many
from dora.scheduler.reconcile import (
    Action,
    ActionKind,
    Backoff,
    Phase,
    reconcile,
    recreations_after,
)
from dora.scheduler.snapshot import Name, Snapshot
from dora.scheduler.types import Booking, GangRequest, NodeView
from dora.store import (
    AlreadyExists,
    Conflict,
    CursorExpired,
    Event,
    FencedOut,
    Key,
    Lease,
    NewRecord,
    NotFound,
    Patch,
    Record,
    Store,
    StoreError,
    Write,
)

log = logging.getLogger("dora.scheduler")

ACTOR = "scheduler"


@dataclass(frozen=True)
class SchedulerSettings:
    zone: str
    holder: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )
    lease_ttl_s: float = 10.0
    ready_s: float = 20.0
    """A node silent longer than this is NOT_READY (same rule as the API)."""
    node_lost_grace_s: float = 60.0
    """A node NOT_READY longer than this is lost: its containers are re-placed."""
    tick_s: float = 1.0
    sweep_s: float = 5.0
    resync_s: float = 300.0
    seed: int | None = None
    backoff: Backoff = field(default_factory=Backoff)
    """Crash-loop backoff before a ``failed`` container is recreated."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SchedulerSettings:
        zone = env.get("ZONE", "").strip()
        if not zone:
            raise ValueError("ZONE is not set: name the zone this scheduler serves")

        def number(name: str, default: float) -> float:
            raw = env.get(name)
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number (got {raw!r})") from None
            if value <= 0:
                raise ValueError(f"{name} must be positive (got {raw!r})")
            return value

        seed = env.get("DORA_SCHEDULER_SEED")
        return cls(
            zone=zone,
            lease_ttl_s=number("DORA_LEASE_TTL_S", 10.0),
            ready_s=number("DORA_NODE_READY_S", 20.0),
            node_lost_grace_s=number("DORA_NODE_LOST_GRACE_S", 60.0),
            tick_s=number("DORA_SCHEDULER_TICK_S", 1.0),
            backoff=Backoff(
                base_s=number("DORA_RECREATE_BACKOFF_S", 10.0),
                max_s=number("DORA_RECREATE_BACKOFF_MAX_S", 300.0),
            ),
            seed=int(seed) if seed and seed.lstrip("-").isdigit() else None,
        )


class NotLeader(Exception):
    """The lease was lost; stop writing and go back to standby."""


@dataclass
class PassStats:
    reconciled: int = 0
    actions: int = 0
    placed: int = 0
    pending: int = 0
    seconds: float = 0.0


class Scheduler:
    def __init__(
        self,
        store: Store,
        settings: SchedulerSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.rng = random.Random(settings.seed)
        self.snapshot = Snapshot(settings.zone)
        self.lease: Lease | None = None
        self.lease_name = f"scheduler/{settings.zone}"
        self._dirty: set[Name] = set()
        self._last_sweep = 0.0
        self._cursor: str | None = None
        self._next_renew: float | None = None
        """When to renew the lease next; None while not leading."""
        self.passes = 0
        # Derived per record and reused while the snapshot holds the same record.
        self._booking_memo: dict[Name, tuple[Record, Booking | None]] = {}
        self._view_memo: dict[str, tuple[Record, NodeView]] = {}

    # ------------------------------------------------------------------ leadership

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by until the lease is ours, lead until it is lost, repeat until `stop`.

        A store error (the database busy or unreachable for a while) is not fatal: the
        scheduler logs it, waits, and tries again. If it held the lease, re-acquiring
        renews it with the same token; if the lease expired meanwhile, a standby may
        have taken over and this one stands by.
        """
        while not stop.is_set():
            try:
                await self._stand_by_then_lead(stop)
            except StoreError as exc:
                log.warning(
                    "event=store_error zone=%s error=%s (retrying)", self.settings.zone, exc
                )
                await _wait(stop, min(self.settings.lease_ttl_s / 3, 2.0))

    async def _stand_by_then_lead(self, stop: asyncio.Event) -> None:
        self.lease = await self.store.acquire_lease(
            self.lease_name, self.settings.holder, self.settings.lease_ttl_s
        )
        if self.lease is None:
            await _wait(stop, self.settings.lease_ttl_s / 3)
            return
        log.info(
            "event=leader zone=%s holder=%s token=%d",
            self.settings.zone,
            self.settings.holder,
            self.lease.token,
        )
        try:
            await self._lead(stop)
        except (NotLeader, FencedOut):
            log.warning("event=lost_lease zone=%s", self.settings.zone)
        finally:
            if self.lease is not None and stop.is_set():
                with contextlib.suppress(StoreError):
                    await self.store.release_lease(self.lease)
            self.lease = None

    async def _lead(self, stop: asyncio.Event) -> None:
        await self.resync()
        self._next_renew = self.clock() + self.settings.lease_ttl_s / 3
        next_resync = self.clock() + self.settings.resync_s
        try:
            while not stop.is_set():
                await self.pass_once()
                wait = max(0.0, min(self.settings.tick_s, self._next_renew - self.clock()))
                await self.follow_feed(wait)
                await self._renew_if_due()
                now = self.clock()
                if now >= next_resync:
                    await self.resync()
                    next_resync = now + self.settings.resync_s
        finally:
            self._next_renew = None

    async def _renew_if_due(self) -> None:
        """Renew every ttl/3 while leading: between passes, and between the write
        batches of a long pass (a pass longer than the ttl would otherwise lose the
        lease every time, and a writer that lost it learns so before writing on)."""
        if self._next_renew is None or self.clock() < self._next_renew:
            return
        await self.renew()
        self._next_renew = self.clock() + self.settings.lease_ttl_s / 3

    async def renew(self) -> None:
        assert self.lease is not None
        renewed = await self.store.renew_lease(self.lease, self.settings.lease_ttl_s)
        if renewed is None:
            raise NotLeader
        self.lease = renewed

    async def resync(self) -> None:
        self._cursor = await self.store.head(self.settings.zone)
        await self.snapshot.load(self.store)
        self._dirty = set(self.snapshot.workloads)

    async def follow_feed(self, max_wait: float) -> None:
        """Refresh the snapshot from the feed, waiting up to `max_wait` for a change."""
        assert self._cursor is not None
        try:
            changes = await self.store.wait_changes(
                self.settings.zone, after=self._cursor, max_wait=max_wait
            )
        except CursorExpired:
            await self.resync()
            return
        if not changes:
            return
        self._cursor = changes[-1].cursor
        latest: dict[Key, int] = {}
        deleted: set[Key] = set()
        for change in changes:
            if change.key.kind in _WATCHED:
                latest[change.key] = change.version
                if change.op == "delete":
                    deleted.add(change.key)
        # The scheduler's own writes come back through the feed: a record the snapshot
        # already holds at that version (no delete in between) is not read again.
        keys = [
            key
            for key, version in latest.items()
            if key in deleted or self.snapshot.version_of(key) != version
        ]
        found = {r.key: r for r in await self.store.get_many(keys)}
        for key in keys:
            self._note(key, found.get(key))

    def _note(self, key: Key, record: Record | None) -> None:
        workload = self.snapshot.put(key, record)
        if workload is not None:
            self._dirty.add(workload)

    # ------------------------------------------------------------------ one pass

    async def pass_once(self) -> PassStats:
        """Reconcile what changed, place what is pending, write the results.

        Writes go out in batches of `BATCH_GROUPS` groups (reconcile actions first,
        then bindings and statuses through one `_Pipeline`), each one transaction on
        SQLite; a batch that hits a concurrent change is retried group by group so one
        busy record does not hold back the rest. Python's cyclic garbage collector is
        paused meanwhile (`collector`).
        """
        started = time.perf_counter()
        with collector.paused():
            stats = await self._pass()
        stats.seconds = time.perf_counter() - started
        self.passes += 1
        return stats

    async def _pass(self) -> PassStats:
        stats = PassStats()
        now = self.clock()
        if now - self._last_sweep >= self.settings.sweep_s:
            self._dirty |= set(self.snapshot.workloads)
            self._last_sweep = now
        lost = self._lost_nodes(now)
        dirty, self._dirty = self._dirty, set()
        phases: dict[Name, tuple[Phase, str, float | None]] = {}
        groups: list[Group] = []
        for name in sorted(dirty):
            workload = self.snapshot.workloads.get(name)
            if workload is None:
                continue
            stats.reconciled += 1
            stats.actions += self._reconcile(workload, now, lost, phases, groups)
        # A new container is not written on its own: if its gang is placed in this
        # pass, the create carries the binding (one write instead of two).
        creates = [g for g in groups if g.create is not None]
        await self._flush([g for g in groups if g.create is None])
        # Bindings and statuses through one pipeline: the store commits a batch while
        # the next is computed. A queued workload's status follows its binding (or its
        # unplaced creates) at once, so both usually share a transaction, which then
        # knows the workload's uid for its events. Statuses do not depend on the
        # bindings being written (they read the workload records and observed states,
        # which bindings do not touch).
        pipe = _Pipeline(self)
        try:
            placed, pending, done = await self._place(now, creates, phases, pipe)
            stats.placed, stats.pending = placed, len(pending)
            for name, (phase, message, started_at) in phases.items():
                if name not in done:
                    await self._add_status(
                        pipe, name, phase, message, pending.get(name), started_at
                    )
            for name, reason in pending.items():
                if name not in phases and name not in done:
                    await self._add_status(pipe, name, None, None, reason, None)
            await pipe.close()
        finally:
            await pipe.abandon()
        return stats

    def _lost_nodes(self, now: float) -> frozenset[str]:
        limit = self.settings.ready_s + self.settings.node_lost_grace_s
        lost = set()
        for name, node in self.snapshot.nodes.items():
            last_seen = (node.observed or {}).get("last_seen")
            if isinstance(last_seen, int | float) and now - float(last_seen) > limit:
                lost.add(name)
        return frozenset(lost)

    def _reconcile(
        self,
        workload: Record,
        now: float,
        lost: frozenset[str],
        phases: dict[Name, tuple[Phase, str, float | None]],
        groups: list[Group],
    ) -> int:
        name = (workload.key.workspace, workload.key.name)
        containers = {c.key.name: c for c in self.snapshot.containers_of(name)}
        views = {n: adapter.container_view(c) for n, c in containers.items()}
        result = reconcile(
            adapter.workload_view(workload), views.values(), now, lost, self.settings.backoff
        )
        for action in result.actions:
            view = views.get(action.container)
            recreations = recreations_after(view, self.settings.backoff) if view else 0
            group = self._action(workload, containers.get(action.container), action, recreations)
            if group is not None:
                groups.append(group)
        if result.remove_workload:
            groups.append(
                Group(name, [Write(workload.key, delete=True, expected_version=workload.version)])
            )
            return len(result.actions) + 1
        phases[name] = (result.phase, result.message, result.started_at)
        return len(result.actions)

    def _action(
        self, workload: Record, container: Record | None, action: Action, recreations: int = 0
    ) -> Group | None:
        """The writes of one reconcile action, with its event (`recreations`: what a
        recreated copy carries, for the crash-loop backoff)."""
        owner = (workload.key.workspace, workload.key.name)
        key = Key("Container", workload.key.zone, workload.key.workspace, action.container)
        event = Event(workload.key, action.reason.value, action.message, ACTOR, self.clock())
        record = NewRecord(
            key=key, spec=workload.spec, owner=workload.owner, parent=workload.key.name
        )
        new = Write(key, new=record)
        kind = action.kind
        if kind is ActionKind.CREATE:
            return Group(owner, [new], [event], create=action.container, revisit=False)
        if container is None:
            return None
        version = container.version
        computed = container.computed or {}
        if kind is ActionKind.DRAIN:
            writes = [_update(container, Patch(desired="drain"))]
        elif kind is ActionKind.DELETE:
            writes = [Write(key, delete=True, expected_version=version)]
        elif kind is ActionKind.RELEASE:
            writes = [_update(container, Patch(computed={**computed, "released": True}))]
        elif kind is ActionKind.RECREATE:
            # A new record (new uid) in the same transaction: the old copy's node sees
            # its assignment gone and removes it; the new one is placed afresh.
            if recreations:
                new = Write(key, new=replace(record, computed={"recreations": recreations}))
            writes = [Write(key, delete=True, expected_version=version), new]
        else:  # MARK_FAILED
            patch = Patch(computed={**computed, "released": True, "lost": action.message})
            writes = [_update(container, patch)]
        return Group(owner, writes, [event])

    async def _flush(self, groups: list[Group]) -> None:
        """Write `groups` in as few transactions as possible; a group that meets a
        concurrent change is dropped (its workload is looked at again next pass)."""
        pipe = _Pipeline(self)
        try:
            for group in groups:
                await pipe.add(group)
            await pipe.close()
        finally:
            await pipe.abandon()

    async def _retry(self, chunk: list[Group]) -> None:
        """A batch met a concurrent change: write its groups one by one."""
        if len(chunk) == 1:
            self._dirty.add(chunk[0].workload)
            return
        for group in chunk:
            await self._flush([group])

    def _send(self, groups: list[Group]) -> asyncio.Task[list[Record | None]]:
        """Hand one batch to the store (the transaction runs in its own time)."""
        writes = [w for g in groups for w in g.writes]
        events = [e for g in groups for e in g.events]
        batch = self.store.batch(writes, actor=ACTOR, fence=self._fence(), events=events)
        return asyncio.ensure_future(batch)

    def _apply(self, groups: list[Group], out: list[Record | None]) -> None:
        """Take a committed batch's records into the snapshot."""
        records = iter(out)
        for group in groups:
            for write in group.writes:
                workload = self.snapshot.put(write.key, next(records))
                if group.revisit and workload is not None:
                    self._dirty.add(workload)

    def _fence(self) -> Any:
        if self.lease is None:
            raise NotLeader
        return self.lease.fence

    # ------------------------------------------------------------------ placement

    def _bookings(self) -> list[Booking]:
        """What every container holds, derived again only from records that changed
        since the last pass (the memo keeps exactly the snapshot's containers)."""
        memo: dict[Name, tuple[Record, Booking | None]] = {}
        known = self._booking_memo
        bookings = []
        for name, container in self.snapshot.containers.items():
            entry = known.get(name)
            if entry is None or entry[0] is not container:
                entry = (container, adapter.booking_of(container))
            memo[name] = entry
            if entry[1] is not None:
                bookings.append(entry[1])
        self._booking_memo = memo
        return bookings

    def _node_views(self, now: float) -> list[NodeView]:
        """Every node as placement sees it, derived again only from records that
        changed since the last pass (or whose readiness did, the one part that
        depends on the clock)."""
        ready_s = self.settings.ready_s
        memo: dict[str, tuple[Record, NodeView]] = {}
        known = self._view_memo
        views = []
        for name, node in self.snapshot.nodes.items():
            entry = known.get(name)
            if (
                entry is None
                or entry[0] is not node
                or entry[1].ready != adapter.is_ready(node, now, ready_s)
            ):
                entry = (node, adapter.node_view(node, now, ready_s))
            memo[name] = entry
            views.append(entry[1])
        self._view_memo = memo
        return views

    def _queue(
        self, fresh: Mapping[Name, Mapping[str, Group]], blocked: dict[Name, str]
    ) -> list[GangRequest]:
        """Every workload's unplaced replicas as one gang; ``fresh`` are the containers
        this pass creates (not written yet), by workload. A gang whose volumes cannot be
        mounted waits in `blocked`, with the reason."""
        queue = []
        containers, by_workload = self.snapshot.containers, self.snapshot.by_workload
        for name, workload in self.snapshot.workloads.items():
            if workload.desired != "run":
                continue
            workspace, spec_hash = name[0], workload.spec_hash
            names = [
                n
                for n in by_workload.get(name, ())
                if (c := containers.get((workspace, n))) is not None
                and not c.node
                and c.desired == "run"
                and c.spec_hash == spec_hash
            ]
            names += fresh.get(name, {})
            unplaced = tuple(sorted(set(names), key=lambda n: (len(n), n)))
            if not unplaced:
                continue
            missing = adapter.missing_volume(
                workload.spec, name[0], self.snapshot.volumes, self.snapshot.storages
            )
            if missing is not None:
                blocked[name] = f"waits: {missing}"
                continue
            queue.append(adapter.gang_of(workload, unplaced))
        return queue

    async def _place(
        self,
        now: float,
        creates: list[Group],
        phases: Mapping[Name, tuple[Phase, str, float | None]],
        pipe: _Pipeline,
    ) -> tuple[int, dict[Name, str], set[Name]]:
        """Place every pending gang; bindings (and the creates of gangs left pending),
        each followed by its workload's status (``phases``: what reconcile decided in
        this pass), go into ``pipe``. Returns the replicas placed, each pending gang's
        reason and the workloads whose status is written."""
        fresh: dict[Name, dict[str, Group]] = {}
        for group in creates:
            assert group.create is not None
            fresh.setdefault(group.workload, {})[group.create] = group
        pending: dict[Name, str] = {}
        done: set[Name] = set()
        queue = self._queue(fresh, pending)
        if not queue:
            for group in creates:
                await pipe.add(group)
            return 0, pending, done
        state = ClusterState(self._node_views(now), self._bookings())
        result = place_many(state, queue, now, self.rng)
        placed = 0
        for gang_result in chain(result.placed, result.pending):
            _, workspace, workload = gang_result.gang.workload
            name = (workspace, workload)
            new = fresh.pop(name, {})
            binding = None
            if gang_result.placed:
                binding = self._binding(gang_result.gang, gang_result.bookings, new)
            elif gang_result.explanation is not None:
                pending[name] = gang_result.explanation.message
            if binding is not None:
                await pipe.add(binding)
                placed += len(binding.writes)
            else:  # pending (or gone): its new containers are written unplaced
                for group in new.values():
                    await pipe.add(group)
            phase, message, started_at = phases.get(name, (None, None, None))
            await self._add_status(pipe, name, phase, message, pending.get(name), started_at)
            done.add(name)
        # Creates of workloads not in the queue (their volumes are missing).
        for new in fresh.values():
            for group in new.values():
                await pipe.add(group)
        return placed, pending, done

    def _binding(
        self, gang: GangRequest, bookings: Mapping[str, Booking], fresh: Mapping[str, Group]
    ) -> Group | None:
        """One gang's bindings: all its containers in one group (all or nothing). A
        container created in this pass (in ``fresh``) is created already bound."""
        _zone, workspace, workload = gang.workload
        writes: list[Write] = []
        events: list[Event] = []
        for name, booking in bookings.items():
            created = fresh.get(name)
            new = created.writes[0].new if created is not None else None
            container = self.snapshot.containers.get((workspace, name))
            if new is None and container is None:
                return None
            spec = new.spec if new is not None else container.spec if container else {}
            volumes = adapter.resolve_volumes(
                spec, workspace, self.snapshot.volumes, self.snapshot.storages
            )
            computed = adapter.computed_of(booking, spec, workload, name, volumes)
            earlier = new.computed if new is not None else container.computed if container else None
            if earlier and earlier.get("recreations"):
                computed["recreations"] = earlier["recreations"]
            if new is not None and created is not None:
                bound = NewRecord(
                    key=new.key,
                    spec=new.spec,
                    owner=new.owner,
                    meta=new.meta,
                    desired=new.desired,
                    computed=computed,
                    observed=new.observed,
                    node=booking.node,
                    parent=new.parent,
                )
                writes.append(Write(new.key, new=bound))
                events += created.events
                key = new.key
            elif container is not None:
                key = container.key
                writes.append(_update(container, Patch(node=booking.node, computed=computed)))
            gpus = f" with GPUs {list(booking.gpu_indices)}" if booking.gpu_indices else ""
            message = f"placed on node {booking.node}{gpus}"
            events.append(Event(key, "Placed", message, ACTOR, self.clock()))
        return Group((workspace, workload), writes, events, revisit=False)

    async def _add_status(
        self,
        pipe: _Pipeline,
        name: Name,
        phase: Phase | None,
        message: str | None,
        reason: str | None,
        started_at: float | None,
    ) -> None:
        status = self._status(name, phase, message, reason, started_at)
        if status is not None:
            await pipe.add(status)

    def _status(
        self,
        name: Name,
        phase: Phase | None,
        message: str | None,
        reason: str | None,
        started_at: float | None,
    ) -> Group | None:
        """The workload's computed status, when it changed (with a Queued event when
        the pending reason did). ``phase``/``message`` None: the workload was not
        reconciled in this pass, so they are what it last wrote (only the pending
        reason and the running count are new)."""
        workload = self.snapshot.workloads.get(name)
        if workload is None:
            return None
        current = workload.computed or {}
        values: dict[str, Any] = {
            "phase": phase.value if phase else current.get("phase", Phase.PENDING.value),
            "running": self.snapshot.running_count(name),
            "message": current.get("message", "") if message is None else message,
            "reason": reason,
        }
        if started_at is not None and current.get("started_at") is None:
            values["started_at"] = started_at
        for key, value in values.items():
            if current.get(key) != value:
                break
        else:
            return None
        events = []
        if reason and reason != current.get("reason"):
            events.append(Event(workload.key, "Queued", reason, ACTOR, self.clock()))
        write = _update(workload, Patch(computed={**current, **values}))
        return Group(name, [write], events, revisit=False)


@dataclass
class Group:
    """Writes that must succeed together (a gang's bindings, a re-creation), the
    events that explain them, and the workload to revisit if they cannot be written."""

    workload: Name
    writes: list[Write]
    events: list[Event] = field(default_factory=list)
    create: str | None = None
    """The container this group only creates (unplaced): the pass may bind it first."""
    revisit: bool = True
    """Reconcile the workload again once written. Not needed after a create, a binding
    or a status: reconcile already counted those in, and would decide the same again
    (placement looks at every pending gang each pass anyway). Needed after drains,
    deletes and releases, which can unblock the next step (e.g. the new gang's creates).
    """


def _update(record: Record, patch: Patch) -> Write:
    """A compare-and-set of ``patch`` on the snapshot's ``record`` (also its base)."""
    return Write(record.key, patch=patch, expected_version=record.version, base=record)


BATCH_GROUPS = 500
"""Groups per transaction: big enough to amortise, small enough to keep locks short."""
IN_FLIGHT = 3
"""Batches handed to the store and not yet committed, at most: enough to keep the
store's writer busy while the pass computes; few, so a lease renewal (queued behind
them) is not held up for long."""


class _Pipeline:
    """Groups written in order, `BATCH_GROUPS` a transaction, while the caller goes
    on computing: a full batch is handed to the store at once and awaited only when
    `IN_FLIGHT` are outstanding (or at `close`). Each batch is fenced and all or
    nothing per group as before; a batch that meets a concurrent change is retried
    group by group (`Scheduler._retry`) when its turn comes, after the later ones,
    which is fine: groups are independent by construction."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._buffer: list[Group] = []
        self._flight: deque[tuple[list[Group], asyncio.Task[list[Record | None]]]] = deque()

    async def add(self, group: Group) -> None:
        self._buffer.append(group)
        if len(self._buffer) >= BATCH_GROUPS:
            await self._submit()

    async def close(self) -> None:
        """Write what is buffered and wait for every batch."""
        if self._buffer:
            await self._submit()
        while self._flight:
            await self._settle_oldest()

    async def abandon(self) -> None:
        """After an error: wait for the batches still outstanding (their SQL runs
        anyway) and keep what they wrote; their errors are not raised again."""
        self._buffer = []
        while self._flight:
            chunk, task = self._flight.popleft()
            with contextlib.suppress(Exception):
                self._scheduler._apply(chunk, await task)

    async def _submit(self) -> None:
        chunk, self._buffer = self._buffer, []
        while len(self._flight) >= IN_FLIGHT:
            await self._settle_oldest()
        await self._scheduler._renew_if_due()
        self._flight.append((chunk, self._scheduler._send(chunk)))
        await asyncio.sleep(0)  # let the batch reach the store's writer now

    async def _settle_oldest(self) -> None:
        chunk, task = self._flight.popleft()
        try:
            out = await task
        except (Conflict, NotFound, AlreadyExists):
            await self._scheduler._retry(chunk)
        else:
            self._scheduler._apply(chunk, out)


_WATCHED = frozenset(("Workload", "Container", "Node", "Volume", "Storage"))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
