"""The API's front door (`DoraApi`) in process: what the listing cache cannot answer
because something broke goes to FastAPI's own route, which answers as every route
does; nothing escapes as a bare server error."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dora.api.app import create_app
from dora.api.settings import ApiSettings
from dora.store import Key, Record, StoreError
from dora.store.sqlite import SqliteStore

SECRET = "a-front-door-test-secret"


class BrokenRows(SqliteStore):
    """A store whose raw listing path fails (as a damaged disk would make it), and
    that is "busy" for one record's name."""

    fail = True
    busy_for = "busy-ws"

    async def list_rows(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        return await super().list_rows(*args, **kwargs)

    async def get(self, key: Key) -> Record:
        if key.name == self.busy_for:
            raise StoreError("database busy: another process held the write lock too long")
        return await super().get(key)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    env = {"ZONE": "z1", "secret": SECRET, "INIT_DB": "true", "DORA_DATA_DIR": str(tmp_path)}
    lines: list[str] = []
    store = BrokenRows(tmp_path / "front.sqlite3")
    app = create_app(ApiSettings.from_env(env), store, announce=lines.append)
    async with app.router.lifespan_context(app):
        token = re.findall(r"eyJ[\w.-]+", " ".join(lines))[0]
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://front", headers=headers
        ) as c:
            yield c


async def test_a_broken_cache_path_falls_back_to_the_route(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/resources/workspace")
    assert r.status_code == 200, r.text
    assert "x-dora-list-cache" not in r.headers  # FastAPI's route answered
    assert "admin" in [item["name"] for item in r.json()["items"]]


async def test_a_store_that_cannot_answer_is_a_503_to_retry(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/resources/workspace/busy-ws")
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "store_unavailable"
    assert "database busy" in r.json()["message"]
    assert r.headers["retry-after"] == "1"


async def test_the_cache_answers_once_the_store_reads_again(
    client: httpx.AsyncClient,
) -> None:
    BrokenRows.fail = False
    try:
        answers = [await client.get("/v1/resources/workspace") for _ in range(2)]
    finally:
        BrokenRows.fail = True
    assert [r.headers.get("x-dora-list-cache") for r in answers] == ["miss", "hit"]
