"""The scheduler's in-memory view of one zone, kept current from the change feed.

Placement and reconcile read only this snapshot: the store is read to refresh the
records a feed entry names (in one `get_many`), and in full at start and on a slow
periodic resync, never inside the placement loop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, TypeVar

from dora.store import Key, Record, Store

WATCHED = ("Workload", "Container", "Node", "Volume", "Storage")
"""Kinds of the zone the scheduler looks at."""

K = TypeVar("K")
Name = tuple[str, str]
"""(workspace, name) inside the zone."""


class Snapshot:
    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.workloads: dict[Name, Record] = {}
        self.containers: dict[Name, Record] = {}
        self.by_workload: defaultdict[Name, set[str]] = defaultdict(set)
        self.nodes: dict[str, Record] = {}
        self.volumes: dict[Name, Record] = {}
        self.storages: dict[str, Record] = {}

    async def load(self, store: Store) -> None:
        """Replace everything with a full read of the zone."""
        fresh = Snapshot(self.zone)
        for kind in WATCHED:
            for record in await store.list_records(kind, zone=self.zone):
                fresh.put(record.key, record)
        self.__dict__.update(fresh.__dict__)

    def put(self, key: Key, record: Record | None) -> Name | None:
        """Insert, replace or (``record=None``) remove; returns the workload it concerns."""
        name = (key.workspace, key.name)
        if key.kind == "Workload":
            _set(self.workloads, name, record)
            return name
        if key.kind == "Container":
            old = self.containers.get(name)
            parent = record.parent if record else old.parent if old else None
            _set(self.containers, name, record)
            if parent:
                owner = (key.workspace, parent)
                if record is None:
                    self.by_workload[owner].discard(key.name)
                else:
                    self.by_workload[owner].add(key.name)
                return owner
            return None
        if key.kind == "Node":
            _set(self.nodes, key.name, record)
        elif key.kind == "Volume":
            _set(self.volumes, name, record)
        elif key.kind == "Storage":
            _set(self.storages, key.name, record)
        return None

    def version_of(self, key: Key) -> int | None:
        """The version of the record held for ``key`` (None when none is held)."""
        name = (key.workspace, key.name)
        table: dict[Any, Record] | None = {
            "Workload": self.workloads,
            "Container": self.containers,
            "Volume": self.volumes,
        }.get(key.kind)
        if table is not None:
            record = table.get(name)
        elif key.kind == "Node":
            record = self.nodes.get(key.name)
        elif key.kind == "Storage":
            record = self.storages.get(key.name)
        else:
            record = None
        return None if record is None or record.key != key else record.version

    def containers_of(self, workload: Name) -> list[Record]:
        workspace, _ = workload
        names = self.by_workload.get(workload, ())
        return [self.containers[(workspace, n)] for n in names if (workspace, n) in self.containers]

    def running_count(self, workload: Name) -> int:
        """How many of the workload's containers their agent reports running."""
        workspace, _ = workload
        containers = self.containers
        count = 0
        for name in self.by_workload.get(workload, ()):
            record = containers.get((workspace, name))
            if record is not None and record.observed and record.observed.get("state") == "running":
                count += 1
        return count

    def all_containers(self) -> Iterable[Record]:
        return self.containers.values()


def _set(table: dict[K, Record], key: K, record: Record | None) -> None:
    if record is None:
        table.pop(key, None)
    else:
        table[key] = record
