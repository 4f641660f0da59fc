"""When the clone's User write fails, the workspace it created is removed again and the
reply says so; when even that fails, the reply says what is left and what to do.

A clone is two writes (the Workspace, then the caller's User record), and only a
competing writer makes the second fail: someone changing or deleting the user in the
instant between them. To make that instant happen on every run, this test serves the
real API app (`create_app`) with uvicorn on a real 127.0.0.1 socket in a thread, on a
real SQLite store, and lets a second writer act on that same store just before the
clone's User write reaches it (`RacingStore`): its writes are real, so the clone's
compare-and-set really conflicts, or really finds the user gone.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from dora.api.app import create_app
from dora.api.services.resources import CAS_RETRIES
from dora.api.settings import ApiSettings
from dora.store import Event, Fence, Key, Patch, Record, Store, Write
from dora.store.sqlite import SqliteStore
from tests.helpers import (
    ADMIN_TOKEN_LINE,
    SECRET,
    SEED_USER,
    ZONE,
    apply_many,
    free_port,
    make_token,
    remember,
    seed_documents,
    unique,
    wait_until,
)

Race = Callable[[Store, Sequence[Write]], Awaitable[None]]


@dataclass
class RacingStore:
    """The real store; `race`, when set, runs (as another writer) right before every
    batch that writes a User record, then the batch goes to the store as sent."""

    inner: Store
    race: Race | None = None
    raced: list[Key] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def batch(
        self,
        writes: Sequence[Write],
        *,
        actor: str,
        fence: Fence | None,
        events: Sequence[Event] = (),
    ) -> list[Record | None]:
        if self.race is not None and any(w.key.kind == "User" and w.patch for w in writes):
            self.raced.append(writes[0].key)
            await self.race(self.inner, writes)
        return await self.inner.batch(writes, actor=actor, fence=fence, events=events)


@dataclass
class Served:
    url: str
    store: RacingStore
    admin: httpx.Client
    user: httpx.Client


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder: Path = tmp_path_factory.mktemp("clone-rollback")
    store = RacingStore(SqliteStore(folder / "dora.db"))
    lines: list[str] = []
    app = create_app(
        ApiSettings(zone=ZONE, secret=SECRET, init_db=True), store, announce=lines.append
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="clone-rollback-api", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, within=30, what="the API to start")
        token = remember(ADMIN_TOKEN_LINE.findall("\n".join(lines))[0])
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as admin:
            apply_many(admin, seed_documents())
            user_token = make_token(admin, SEED_USER, SEED_USER).token
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {user_token}"}
            ) as user:
                yield Served(url, store, admin, user)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the API thread did not stop"


@pytest.fixture
def race(served: Served) -> Iterator[Callable[[Race], None]]:
    def arm(r: Race) -> None:
        served.store.raced.clear()
        served.store.race = r

    yield arm
    served.store.race = None


def _grants(served: Served) -> list[dict[str, str]]:
    body = served.admin.get(f"/v1/resources/user/{SEED_USER}").json()
    grants: list[dict[str, str]] = body["spec"]["resources"]
    return grants


async def _touch(store: Store, key: Key) -> None:
    """Another writer: change the record's meta (a real write, version + 1)."""
    record = await store.get(key)
    meta = {**record.meta, "touched": record.meta.get("touched", 0) + 1}
    await store.update(key, Patch(meta=meta), expected_version=record.version, actor="other")


def test_a_user_record_that_keeps_changing_rolls_the_workspace_back(
    served: Served, race: Callable[[Race], None]
) -> None:
    async def other_writer(store: Store, writes: Sequence[Write]) -> None:
        await _touch(store, writes[0].key)

    race(other_writer)
    before = _grants(served)
    name = unique("busy")
    r = served.user.post(f"/v1/workspaces/{SEED_USER}/clone", json={"name": name})
    assert r.status_code == 409, r.text
    message = r.json()["message"]
    assert "kept changing" in message
    assert f"workspace {SEED_USER}.{name} was removed again, nothing changed" in message
    assert len(served.store.raced) == CAS_RETRIES  # it did retry, each time re-reading
    target = f"{SEED_USER}.{name}"
    assert served.admin.get(f"/v1/resources/workspace/{target}").status_code == 404
    assert _grants(served) == before


def test_a_user_deleted_meanwhile_rolls_the_workspace_back(
    served: Served, race: Callable[[Race], None]
) -> None:
    victim = unique("gone")
    apply_many(
        served.admin,
        [
            {"apiVersion": "v1", "kind": "Workspace", "metadata": {"name": victim}},
            {
                "apiVersion": "v1",
                "kind": "User",
                "metadata": {"name": victim},
                "spec": {
                    "resources": [
                        {"kind": "All", "zone": ZONE, "workspace": victim, "role": "user"}
                    ]
                },
            },
        ],
    )
    token = make_token(served.admin, victim, victim).token

    async def delete_the_user(store: Store, writes: Sequence[Write]) -> None:
        await store.delete(writes[0].key, actor="admin")

    race(delete_the_user)
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.post(f"/v1/workspaces/{victim}/clone", json={"name": "x"})
    assert r.status_code == 409, r.text
    assert "no longer exists" in r.json()["message"]
    assert "was removed again" in r.json()["message"]
    assert served.admin.get(f"/v1/resources/workspace/{victim}.x").status_code == 404


def test_when_the_rollback_fails_too_the_reply_says_what_is_left(
    served: Served, race: Callable[[Race], None]
) -> None:
    name = unique("stuck")
    target = Key("Workspace", "", "", f"{SEED_USER}.{name}")

    async def other_writer(store: Store, writes: Sequence[Write]) -> None:
        await _touch(store, writes[0].key)
        await _touch(store, target)  # the workspace changed too: removing it must not

    race(other_writer)
    before = _grants(served)
    r = served.user.post(f"/v1/workspaces/{SEED_USER}/clone", json={"name": name})
    assert r.status_code == 409, r.text
    message = r.json()["message"]
    assert f"workspace {target.name} was created but could not be removed again" in message
    assert f"dora delete ws {target.name}" in message
    assert served.admin.get(f"/v1/resources/workspace/{target.name}").status_code == 200
    assert _grants(served) == before


def test_an_unexpected_failure_rolls_back_and_is_a_json_500(
    served: Served, race: Callable[[Race], None]
) -> None:
    async def broken(store: Store, writes: Sequence[Write]) -> None:
        raise OSError("disk on fire")

    race(broken)
    name = unique("boom")
    r = served.user.post(f"/v1/workspaces/{SEED_USER}/clone", json={"name": name})
    assert r.status_code == 500, r.text
    assert r.json()["code"] == "internal"
    assert "was removed again" in r.json()["message"] and "OSError" in r.json()["message"]
    assert served.admin.get(f"/v1/resources/workspace/{SEED_USER}.{name}").status_code == 404


def test_without_a_race_the_same_server_clones(served: Served) -> None:
    """The harness itself changes nothing: the same request succeeds unraced."""
    r = served.user.post(f"/v1/workspaces/{SEED_USER}/clone", json={"name": unique("calm")})
    assert r.status_code == 201, r.text
    assert len(r.json()["grants"]) == 1
