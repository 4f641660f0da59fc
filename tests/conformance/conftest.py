"""Fixtures of the store conformance suite, parametrised by backend.

Every test gets a fresh, empty, initialised store. Adding a backend means adding one
factory to `FACTORIES` (and its name to `backend_names`); the tests never change.

A factory yields a `Backend`: the store, plus the environment (`StoreSettings.from_env`
variables) with which another process opens the *same* store, so the multi-process
tests can run real child processes against any backend.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dora.store import Store
from dora.store.config import StoreSettings, open_store
from dora.store.sqlite import SqliteStore


@dataclass(frozen=True)
class Backend:
    name: str
    store: Store
    env: dict[str, str]
    """Variables for `StoreSettings.from_env` that open this same store elsewhere."""


BackendFactory = Callable[[Path, bool], AbstractAsyncContextManager[Backend]]
"""(tmp_path, tiny_feed) → Backend. ``tiny_feed``: a feed retention so small that a
handful of writes (or, for a time-based backend, a second or two) trims it."""


@asynccontextmanager
async def sqlite_backend(tmp_path: Path, tiny_feed: bool) -> AsyncIterator[Backend]:
    env = {"DORA_DATA_DIR": str(tmp_path / "data"), "DB_NAME": "conformance", "INIT_DB": "1"}
    settings = StoreSettings.from_env(env)
    if tiny_feed:
        await (await open_store(settings)).close()  # creates dir, file and schema
        store: Store = SqliteStore(settings.sqlite_path, feed_retention=4)
    else:
        store = await open_store(settings)
    try:
        yield Backend("sqlite", store, env)
    finally:
        await store.close()


_CQL: dict[str, object] = {}
"""One driver connection per test process, shared by every CQL test (connecting is slow)."""


@asynccontextmanager
async def cql_backend(tmp_path: Path, tiny_feed: bool) -> AsyncIterator[Backend]:
    """The CQL store on ``DORA_TEST_CONTACT_POINTS``: one keyspace per test process,
    created once, every table truncated before each test (faster than a new keyspace)."""
    from dora.store.config import parse_contact_points
    from dora.store.cql import CqlStore, connect

    points = parse_contact_points(os.environ["DORA_TEST_CONTACT_POINTS"])
    keyspace = f"conformance_{os.getpid()}"
    if "session" not in _CQL:
        cluster, session = await asyncio.to_thread(connect, points)
        _CQL.update(cluster=cluster, session=session)
        await CqlStore(session, keyspace, replication_factor=min(3, len(points))).init()
    session = _CQL["session"]
    # Tiny feed: two seconds of retention in one-second buckets.
    options = {"feed_retention": 2.0, "feed_bucket": 1} if tiny_feed else {}
    store = CqlStore(session, keyspace, **options)  # type: ignore[arg-type]
    await store.truncate_all()
    env = {
        "CONTACT_POINTS": os.environ["DORA_TEST_CONTACT_POINTS"],
        "DB_NAME": keyspace,
        "INIT_DB": "0",
    }
    try:
        yield Backend("cql", store, env)
    finally:
        await store.close()


FACTORIES: dict[str, BackendFactory] = {"sqlite": sqlite_backend, "cql": cql_backend}


def backend_names() -> list[str]:
    names = ["sqlite"]
    if os.environ.get("DORA_TEST_CONTACT_POINTS"):
        names.append("cql")
    return names


def factory(name: str) -> BackendFactory:
    if name not in FACTORIES:
        pytest.fail(f"backend {name!r} was asked for but has no factory in FACTORIES yet")
    return FACTORIES[name]


@pytest.fixture(params=backend_names())
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with factory(request.param)(tmp_path, False) as made:
        yield made


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


@pytest.fixture(params=backend_names())
async def tiny_feed_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with factory(request.param)(tmp_path, True) as made:
        yield made.store
