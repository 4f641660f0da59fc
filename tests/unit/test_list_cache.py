"""The listing cache's pure parts: which requests it answers, and its memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dora.api.list_cache import (
    MAX_TEXT,
    Decision,
    Decisions,
    ListCache,
    ListQuery,
    cacheable_kind,
    parse_list_request,
)
from dora.api.services.resources import ListScope
from dora.api.services.views import record_out, row_json
from dora.store import Key, NewRecord
from dora.store.sqlite import SqliteStore

P = "/v1/resources/"


@pytest.mark.parametrize(
    ("path", "query", "want"),
    [
        (P + "workload", b"", ListQuery("workload")),
        (P + "wk", b"workspace=a&zone=z", ListQuery("wk", "z", "a")),
        (P + "wk", b"all=TRUE", ListQuery("wk", all_workspaces=True)),
        (P + "wk", b"all=0", ListQuery("wk")),
        (P + "wk", b"workspace=caf%C3%A9", ListQuery("wk", workspace="café")),
        (P + "wk", b"zone=", ListQuery("wk", zone="")),  # the route's default too
        (P + "wk", b"workspace=" + b"w" * MAX_TEXT, ListQuery("wk", workspace="w" * MAX_TEXT)),
    ],
)
def test_listings_it_answers(path: str, query: bytes, want: ListQuery) -> None:
    assert parse_list_request(path, query) == want


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/resources", b""),
        (P, b""),
        (P + "workload/name", b""),  # describe
        ("/v1/whoami", b""),
        (P + "wk", b"all=maybe"),  # FastAPI's 422
        (P + "wk", b"workspace=" + b"w" * (MAX_TEXT + 1)),  # FastAPI's 422
        (P + "wk", b"workspace=a&workspace=b"),  # which one wins is the route's rule
        (P + "wk", b"colour=blue"),  # unknown: ignored by the route, not guessed here
    ],
)
def test_everything_else_goes_to_the_route(path: str, query: bytes) -> None:
    assert parse_list_request(path, query) is None


def test_clock_dependent_and_read_only_kinds_are_not_cached() -> None:
    assert cacheable_kind("wk") is not None
    assert cacheable_kind("Container") is not None
    for text in ("node", "nodes", "gpu", "cpu", "no-such-kind"):
        assert cacheable_kind(text) is None, text


def key(name: str) -> tuple[str, str | None, str | None, None]:
    return (name, "z", "w", None)


def test_an_entry_lives_for_its_generation_only() -> None:
    cache = ListCache()
    assert cache.get(key("a"), 1) is None
    cache.put(key("a"), 1, b"one")
    assert cache.get(key("a"), 1) == b"one"
    assert cache.get(key("a"), 2) is None  # the store moved on: everything is stale
    assert len(cache) == 0
    cache.put(key("a"), 1, b"late")  # read at an older generation: not kept
    assert cache.get(key("a"), 2) is None


def test_least_recently_used_entries_go_first_within_the_limits() -> None:
    cache = ListCache(max_entries=2, max_bytes=40)
    cache.get(key("x"), 7)
    cache.put(key("a"), 7, b"a" * 8)
    cache.put(key("b"), 7, b"b" * 8)
    assert cache.get(key("a"), 7) is not None  # a is now the most recent
    cache.put(key("c"), 7, b"c" * 8)
    assert cache.get(key("b"), 7) is None
    assert cache.get(key("a"), 7) == b"a" * 8
    cache.put(key("big"), 7, b"x" * 11)  # over a quarter of max_bytes: never kept
    assert cache.get(key("big"), 7) is None
    cache.put(key("d"), 7, b"d" * 10)
    cache.put(key("e"), 7, b"e" * 10)
    cache.put(key("f"), 7, b"f" * 10)
    assert len(cache) == 2


def test_a_decision_holds_for_its_identity_version_and_its_token_life() -> None:
    decisions = Decisions()
    query = ListQuery("Workload", workspace="ws")
    listing = ListScope(zone="z", workspace="ws", scopes=None)
    decisions.put("tok", query, Decision(7, 100.0, "jti:a", listing, ("Workload", "z", "ws", None)))
    assert decisions.get("tok", query, 7, 99.9) is not None
    assert decisions.get("tok", query, 8, 99.9) is None  # a user, role or token changed
    assert decisions.get("tok", query, 7, 100.0) is None  # the token has expired
    assert decisions.get("tok", ListQuery("Workload"), 7, 1.0) is None  # another listing
    assert decisions.get("other", query, 7, 1.0) is None  # another token


def test_decisions_are_bounded() -> None:
    decisions = Decisions(max_entries=3)
    listing = ListScope(zone="z", workspace="ws", scopes=None)
    for i in range(7):
        decisions.put(
            f"t{i}", ListQuery("Workload"), Decision(1, 9.0, "k", listing, ("W", "z", "ws", None))
        )
        assert len(decisions) <= 3
    assert decisions.get("t6", ListQuery("Workload"), 1, 0.0) is not None


async def test_a_row_renders_as_its_record_does(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "rows.sqlite3")
    await store.init()
    spec = {"image": {"image": "büsybox"}, "env": [{"name": "Ω", "value": "1.5"}], "n": 1e16}
    made = [
        NewRecord(key=Key("Workload", "z", "w", "plain"), spec=spec, owner="ann"),
        NewRecord(
            key=Key("Workload", "z", "w", "running"),
            spec=spec,
            meta={"labels": {"team": "ü"}},
            owner="ann",
            computed={"phase": "Running", "pending": None, "ids": [0, 1]},
        ),
        NewRecord(key=Key("Workload", "z", "w", "paused"), spec=spec, owner="ann", desired="pause"),
        NewRecord(
            key=Key("Container", "z", "w", "running.1"),
            spec=spec,
            owner="scheduler",
            node="n1",
            parent="running",
            observed={"state": "running", "exit_code": None},
        ),
        NewRecord(key=Key("Container", "z", "w", "running.2"), spec=spec, owner="s", node="n1"),
        NewRecord(key=Key("Container", "z", "w", "running.3"), spec=spec, owner="s"),
        NewRecord(key=Key("Container", "z", "w", "gone.1"), spec=spec, owner="s", desired="drain"),
        NewRecord(key=Key("Volume", "z", "w", "home"), spec={"storage": "s1"}, owner="ann"),
        NewRecord(key=Key("Node", "z", "", "n1"), spec={"schedulingDisabled": True}, owner="a"),
    ]
    try:
        for new in made:
            await store.create(new, actor="t")
        for kind in ("Workload", "Container", "Volume", "Node"):
            rows = await store.list_rows(kind, zone="z")
            records = await store.list_records(kind, zone="z")
            assert len(rows) == len(records) > 0
            for row, record in zip(rows, records, strict=True):
                want = record_out(record, now=100.0, ready_s=20.0).model_dump(mode="json")
                assert json.loads(row_json(row, now=100.0, ready_s=20.0)) == want
    finally:
        await store.close()
