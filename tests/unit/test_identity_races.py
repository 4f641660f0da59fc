"""The API's identity cache against overtaken reads: a store read that was in flight
while this replica applied a newer state (a revoke, a user update) never brings the
older state back. The store is a real SQLite file; a thin wrapper holds a read after
it has read, so the interleaving is exact rather than left to timing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dora.api.bootstrap import token_record
from dora.api.errors import ApiError
from dora.api.identity import GLOBAL, TOKEN_KIND, Identity, token_key
from dora.auth import issue_token
from dora.store import Key, NewRecord, Patch, Record
from dora.store.sqlite import SqliteStore

USER = Key("User", GLOBAL, GLOBAL, "ada")
SECRET = "a-test-secret-of-some-length"


class HeldStore:
    """A store whose next read of `hold` (a key for `get`, a kind for `list_records`)
    stops after reading, until `release` is set."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.hold: Key | str | None = None
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _held(self, what: Key | str) -> None:
        if what == self.hold:
            self.hold = None
            self.read_done.set()
            await self.release.wait()

    async def get(self, key: Key) -> Record:
        record = await self.inner.get(key)
        await self._held(key)
        return record

    async def list_records(self, kind: str, **filters: Any) -> list[Record]:
        records = await self.inner.list_records(kind, **filters)
        await self._held(kind)
        return records


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HeldStore]:
    inner = SqliteStore(tmp_path / "identity.sqlite3")
    await inner.init()
    await inner.create(NewRecord(key=USER, spec=grants("reader"), owner="admin"), actor="admin")
    yield HeldStore(inner)
    await inner.close()


def grants(role: str) -> dict[str, Any]:
    return {"resources": [{"kind": "Workload", "zone": "All", "workspace": "All", "role": role}]}


async def new_token(store: HeldStore) -> tuple[str, Key]:
    token, claims = issue_token(SECRET, user="ada", workspace="ada", token_id="1", now=1.0)
    record = token_record(
        jti=claims.jti,
        user="ada",
        workspace="ada",
        token_id="1",
        created_by="admin",
        expires_at=None,
    )
    await store.inner.create(record, actor="admin")
    return token, token_key(claims.jti)


async def revoke(store: HeldStore, identity: Identity, key: Key) -> None:
    """What `DELETE /v1/tokens/{jti}` does: delete, then apply at once here."""
    await store.inner.delete(key, actor="ada")
    identity.apply_record(key, None)


async def test_a_token_revoked_while_the_feed_reads_it_stays_revoked(store: HeldStore) -> None:
    identity = Identity(store, SECRET)  # type: ignore[arg-type]
    await identity.reload()
    token, key = await new_token(store)
    # The feed follower saw the token's creation and reads its record...
    store.hold = key
    reading = asyncio.create_task(identity.refresh(key))
    await store.read_done.wait()
    # ...and the token is revoked on this replica before that read comes back.
    await revoke(store, identity, key)
    store.release.set()
    await reading
    assert key.name not in identity.tokens
    with pytest.raises(ApiError) as refused:
        await identity.authenticate(token)
    assert refused.value.status == 401 and "revoked" in refused.value.message


async def test_a_user_updated_while_a_read_is_in_flight_keeps_the_update(
    store: HeldStore,
) -> None:
    identity = Identity(store, SECRET)  # type: ignore[arg-type]
    await identity.reload()
    store.hold = USER
    reading = asyncio.create_task(identity.refresh(USER))
    await store.read_done.wait()
    before = await store.inner.get(USER)
    updated = await store.inner.update(
        USER, Patch(spec=grants("writer")), expected_version=before.version, actor="admin"
    )
    identity.apply_record(USER, updated)
    store.release.set()
    await reading
    assert [g.role for g in identity.users["ada"].grants] == ["writer"]


async def test_a_full_reload_does_not_bring_back_a_token_revoked_meanwhile(
    store: HeldStore,
) -> None:
    identity = Identity(store, SECRET)  # type: ignore[arg-type]
    token, key = await new_token(store)
    await identity.reload()
    assert (await identity.authenticate(token)).name == "ada"
    store.hold = TOKEN_KIND
    reloading = asyncio.create_task(identity.reload())
    await store.read_done.wait()
    await revoke(store, identity, key)
    store.release.set()
    await reloading
    assert key.name not in identity.tokens
    with pytest.raises(ApiError):
        await identity.authenticate(token)
