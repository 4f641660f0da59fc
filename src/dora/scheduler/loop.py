"""The scheduler process: one active per zone, thin around the pure decisions.

Leadership
    The active scheduler holds the store lease ``scheduler/<zone>`` and renews it every
    ttl/3. Every write it makes carries the lease's fence, so a scheduler that lost
    the lease (paused, partitioned) cannot write anything once another took over:
    the store refuses with `FencedOut` and the old one steps down. A standby polls
    the lease and takes over within one ttl of the leader's last renewal.

A pass
    1. Reconcile each workload that changed (and, every `sweep_s`, all of them, for
       clock-driven rules: maxRunTime, lost nodes) → container creates, drains,
       deletes, releases, re-creations, and the workload's phase.
    2. Place every pending gang (all unplaced replicas of a workload, together or
       not at all) with `place_many` over the snapshot's nodes and bookings.
    3. Write bindings gang by gang (one atomic batch each, fenced), write pending
       reasons and phases only when they change, and record events.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dora.scheduler import adapter
from dora.scheduler.placement import ClusterState, place_many
from dora.scheduler.reconcile import Action, ActionKind, Phase, reconcile
from dora.scheduler.snapshot import Name, Snapshot
from dora.scheduler.types import Booking, GangRequest
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
        self.passes = 0

    # ------------------------------------------------------------------ leadership

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by until the lease is ours, lead until it is lost, repeat until `stop`."""
        while not stop.is_set():
            self.lease = await self.store.acquire_lease(
                self.lease_name, self.settings.holder, self.settings.lease_ttl_s
            )
            if self.lease is None:
                await _wait(stop, self.settings.lease_ttl_s / 3)
                continue
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
                    await self.store.release_lease(self.lease)
                self.lease = None

    async def _lead(self, stop: asyncio.Event) -> None:
        await self.resync()
        renew_every = self.settings.lease_ttl_s / 3
        next_renew = self.clock() + renew_every
        next_resync = self.clock() + self.settings.resync_s
        while not stop.is_set():
            await self.pass_once()
            wait = max(0.0, min(self.settings.tick_s, next_renew - self.clock()))
            await self.follow_feed(wait)
            now = self.clock()
            if now >= next_renew:
                await self.renew()
                next_renew = now + renew_every
            if now >= next_resync:
                await self.resync()
                next_resync = now + self.settings.resync_s

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
        keys = list(dict.fromkeys(c.key for c in changes if c.key.kind in _WATCHED))
        found = {r.key: r for r in await self.store.get_many(keys)}
        for key in keys:
            self._note(key, found.get(key))

    def _note(self, key: Key, record: Record | None) -> None:
        workload = self.snapshot.put(key, record)
        if workload is not None:
            self._dirty.add(workload)

    # ------------------------------------------------------------------ one pass

    async def pass_once(self) -> PassStats:
        """Reconcile what changed, place what is pending, write the results."""
        started = time.perf_counter()
        stats = PassStats()
        now = self.clock()
        if now - self._last_sweep >= self.settings.sweep_s:
            self._dirty |= set(self.snapshot.workloads)
            self._last_sweep = now
        lost = self._lost_nodes(now)
        dirty, self._dirty = self._dirty, set()
        phases: dict[Name, tuple[Phase, str]] = {}
        for name in sorted(dirty):
            workload = self.snapshot.workloads.get(name)
            if workload is None:
                continue
            stats.reconciled += 1
            stats.actions += await self._reconcile(workload, now, lost, phases)
        placed, pending = await self._place(now)
        stats.placed, stats.pending = placed, len(pending)
        for name, (phase, message) in phases.items():
            reason = pending.get(name)
            await self._write_workload_status(name, phase, message, reason, now)
        for name, reason in pending.items():
            if name not in phases and name in self.snapshot.workloads:
                await self._write_workload_status(name, Phase.PENDING, "", reason, now)
        stats.seconds = time.perf_counter() - started
        self.passes += 1
        return stats

    def _lost_nodes(self, now: float) -> frozenset[str]:
        limit = self.settings.ready_s + self.settings.node_lost_grace_s
        lost = set()
        for name, node in self.snapshot.nodes.items():
            last_seen = (node.observed or {}).get("last_seen")
            if isinstance(last_seen, int | float) and now - float(last_seen) > limit:
                lost.add(name)
        return frozenset(lost)

    async def _reconcile(
        self, workload: Record, now: float, lost: frozenset[str], phases: dict[Name, Any]
    ) -> int:
        name = (workload.key.workspace, workload.key.name)
        containers = {c.key.name: c for c in self.snapshot.containers_of(name)}
        views = [adapter.container_view(c) for c in containers.values()]
        result = reconcile(adapter.workload_view(workload), views, now, lost)
        for action in result.actions:
            await self._act(workload, containers.get(action.container), action)
        if result.remove_workload:
            await self._delete(workload)
            return len(result.actions) + 1
        phases[name] = (result.phase, result.message)
        if result.started_at is not None and (workload.computed or {}).get("started_at") is None:
            await self._patch_computed(workload, {"started_at": result.started_at})
        return len(result.actions)

    async def _act(self, workload: Record, container: Record | None, action: Action) -> None:
        key = Key("Container", workload.key.zone, workload.key.workspace, action.container)
        kind = action.kind
        try:
            if kind is ActionKind.CREATE:
                await self._create_container(workload, key)
            elif container is None:
                return
            elif kind is ActionKind.DRAIN:
                await self._update(container, Patch(desired="drain"))
            elif kind is ActionKind.DELETE:
                await self._delete(container)
            elif kind is ActionKind.RELEASE:
                computed = {**(container.computed or {}), "released": True}
                await self._update(container, Patch(computed=computed))
            elif kind is ActionKind.RECREATE:
                await self._delete(container)
                await self._create_container(workload, key)
            elif kind is ActionKind.MARK_FAILED:
                computed = {**(container.computed or {}), "released": True, "lost": action.message}
                await self._update(container, Patch(computed=computed))
        except (Conflict, NotFound, AlreadyExists):
            # Someone (the API, an agent report) changed it meanwhile: look again next pass.
            self._dirty.add((workload.key.workspace, workload.key.name))
            return
        await self._event(workload.key, action.reason.value, action.message)

    async def _create_container(self, workload: Record, key: Key) -> None:
        record = await self.store.create(
            NewRecord(
                key=key,
                spec=workload.spec,
                owner=workload.owner,
                parent=workload.key.name,
            ),
            actor=ACTOR,
            fence=self._fence(),
        )
        self._note(key, record)

    async def _update(self, record: Record, patch: Patch) -> Record:
        updated = await self.store.update(
            record.key, patch, expected_version=record.version, actor=ACTOR, fence=self._fence()
        )
        self._note(record.key, updated)
        return updated

    async def _delete(self, record: Record) -> None:
        await self.store.delete(
            record.key, expected_version=record.version, actor=ACTOR, fence=self._fence()
        )
        self._note(record.key, None)

    async def _patch_computed(self, record: Record, values: dict[str, Any]) -> None:
        current = record.computed or {}
        if all(current.get(k) == v for k, v in values.items()):
            return
        with contextlib.suppress(Conflict, NotFound):
            await self._update(record, Patch(computed={**current, **values}))

    async def _event(self, key: Key, reason: str, message: str) -> None:
        with contextlib.suppress(NotFound):
            await self.store.add_event(Event(key, reason, message, ACTOR, self.clock()))

    def _fence(self) -> Any:
        if self.lease is None:
            raise NotLeader
        return self.lease.fence

    # ------------------------------------------------------------------ placement

    def _bookings(self) -> list[Booking]:
        bookings = []
        for container in self.snapshot.all_containers():
            booking = adapter.booking_of(container)
            if booking is not None:
                bookings.append(booking)
        return bookings

    def _queue(self) -> list[tuple[GangRequest, Record]]:
        queue = []
        for name, workload in self.snapshot.workloads.items():
            if workload.desired != "run":
                continue
            unplaced = tuple(
                sorted(
                    (
                        c.key.name
                        for c in self.snapshot.containers_of(name)
                        if not c.node and c.desired == "run" and c.spec_hash == workload.spec_hash
                    ),
                    key=lambda n: (len(n), n),
                )
            )
            if unplaced:
                queue.append((adapter.gang_of(workload, unplaced), workload))
        return queue

    async def _place(self, now: float) -> tuple[int, dict[Name, str]]:
        queue = self._queue()
        if not queue:
            return 0, {}
        nodes = [
            adapter.node_view(n, now, self.settings.ready_s) for n in self.snapshot.nodes.values()
        ]
        state = ClusterState(nodes, self._bookings())
        result = place_many(state, [g for g, _ in queue], now, self.rng)
        placed = 0
        for gang_result in result.placed:
            placed += await self._bind(gang_result.gang, dict(gang_result.bookings))
        pending: dict[Name, str] = {}
        for gang_result in result.pending:
            _, workspace, workload = gang_result.gang.workload
            if gang_result.explanation is not None:
                pending[(workspace, workload)] = gang_result.explanation.message
        return placed, pending

    async def _bind(self, gang: GangRequest, bookings: dict[str, Booking]) -> int:
        _zone, workspace, workload = gang.workload
        writes: list[Write] = []
        records: list[tuple[Record, Booking]] = []
        for name, booking in bookings.items():
            container = self.snapshot.containers.get((workspace, name))
            if container is None:
                return 0
            volumes = adapter.resolve_volumes(
                container.spec, workspace, self.snapshot.volumes, self.snapshot.storages
            )
            computed = adapter.computed_of(booking, container, volumes)
            writes.append(
                Write(
                    key=container.key,
                    patch=Patch(node=booking.node, computed=computed),
                    expected_version=container.version,
                )
            )
            records.append((container, booking))
        try:
            await self.store.batch(writes, actor=ACTOR, fence=self._fence())
        except (Conflict, NotFound):
            self._dirty.add((workspace, workload))
            return 0
        refreshed = {r.key: r for r in await self.store.get_many([w.key for w in writes])}
        for container, booking in records:
            self._note(container.key, refreshed.get(container.key))
            gpus = f" with GPUs {list(booking.gpu_indices)}" if booking.gpu_indices else ""
            await self._event(container.key, "Placed", f"placed on node {booking.node}{gpus}")
        return len(records)

    async def _write_workload_status(
        self, name: Name, phase: Phase, message: str, reason: str | None, now: float
    ) -> None:
        workload = self.snapshot.workloads.get(name)
        if workload is None:
            return
        running = sum(
            1
            for c in self.snapshot.containers_of(name)
            if (c.observed or {}).get("state") == "running"
        )
        values: dict[str, Any] = {
            "phase": phase.value,
            "running": running,
            "message": message,
            "reason": reason,
        }
        previous = (workload.computed or {}).get("reason")
        await self._patch_computed(workload, values)
        if reason and reason != previous:
            await self._event(workload.key, "Queued", reason)


_WATCHED = frozenset(("Workload", "Container", "Node", "Volume", "Storage"))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
