"""The resource API over a real socket and real SQLite: the admin guide's YAML, apply
statuses, versions, events, describe, pause/resume, delete rules, and the error shape
for everything a client can get wrong."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.helpers import (
    SEED_USER,
    ZONE,
    ApiProcess,
    apply,
    apply_many,
    create_container,
    doc,
    make_token,
    make_workspace,
    node_doc,
    seed_documents,
    server_fixture,
    unique,
    volume_doc,
    workload_doc,
)

api = server_fixture(name="resources")


@pytest.fixture(scope="module")
def admin(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(api.admin_token()) as c:
        yield c


@pytest.fixture(scope="module")
def seeded(admin: httpx.Client) -> list[dict[str, Any]]:
    """The admin guide's documents applied twice: (first results, second results)."""
    first = admin.post("/v1/apply-many", json=seed_documents())
    assert first.status_code == 200, first.text
    second = admin.post("/v1/apply-many", json=seed_documents())
    assert second.status_code == 200, second.text
    return [first.json()["items"], second.json()["items"]]


@pytest.fixture(scope="module")
def seed_user(api: ApiProcess, admin: httpx.Client, seeded: Any) -> Iterator[httpx.Client]:
    token = make_token(admin, SEED_USER, SEED_USER, "1")
    with api.client(token.token) as c:
        yield c


# ------------------------------------------------------------------ the admin guide


def test_seed_documents_apply_as_admin_created_then_unchanged(seeded: Any) -> None:
    first, second = seeded
    kinds = [d["kind"] for d in seed_documents()]
    assert all(item["ok"] for item in first), first
    statuses = [item["result"]["status"] for item in first]
    # The zone exists from the bootstrap (same spec): unchanged; the rest is new.
    assert statuses[0] == "unchanged" and kinds[0] == "Zone"
    assert statuses[1:] == ["created"] * (len(kinds) - 1)
    assert [item["result"]["status"] for item in second] == ["unchanged"] * len(kinds)


def test_seed_documents_land_where_the_guide_says(admin: httpx.Client, seeded: Any) -> None:
    home = admin.get("/v1/resources/volume/home", params={"workspace": SEED_USER})
    assert home.status_code == 200, home.text
    assert (home.json()["zone"], home.json()["workspace"]) == (ZONE, SEED_USER)
    rc = admin.get("/v1/resources/rc").json()["items"]
    assert [(r["name"], r["zone"]) for r in rc] == [("Tesla V100-SXM2-16GB", ZONE)]
    user = admin.get(f"/v1/resources/user/{SEED_USER}").json()
    assert user["spec"]["credits"] == [{"zone": ZONE, "weekly": 500}]
    nodes = {n["name"] for n in admin.get("/v1/resources/nodes").json()["items"]}
    assert nodes == {"node1", "node2"}


def test_defaults_come_from_the_callers_user(seed_user: httpx.Client) -> None:
    name = unique("mine")
    result = apply(seed_user, workload_doc(name))
    assert (result["zone"], result["workspace"], result["status"]) == (ZONE, SEED_USER, "created")
    listed = seed_user.get("/v1/resources/wk").json()["items"]
    assert name in [w["name"] for w in listed]
    assert seed_user.get("/v1/whoami").json()["workspace"] == SEED_USER


def test_metadata_group_is_a_synonym_of_workspace(admin: httpx.Client, seeded: Any) -> None:
    d = workload_doc(unique("grp"))
    d["metadata"]["group"] = SEED_USER
    assert apply(admin, d)["workspace"] == SEED_USER


# ------------------------------------------------------------------ apply statuses


def test_workload_apply_statuses_and_versions(admin: httpx.Client, seeded: Any) -> None:
    name = unique("wk")
    base = workload_doc(name, workspace=SEED_USER, replicas=1)
    first = apply(admin, base)
    assert (first["status"], first["version"]) == ("created", 1)
    assert first["message"] == f"Workload {name} created"
    assert apply(admin, base)["status"] == "unchanged"

    scaled = apply(admin, workload_doc(name, workspace=SEED_USER, replicas=3))
    assert scaled["status"] == "scaled"
    assert "from 1 to 3" in scaled["message"]
    params = {"workspace": SEED_USER}
    versions = admin.get(f"/v1/resources/workload/{name}/versions", params=params).json()
    assert len(versions["items"]) == 1  # scaling is not a new spec version

    updated = apply(admin, workload_doc(name, workspace=SEED_USER, replicas=3, image="alpine:3"))
    assert updated["status"] == "updated"
    versions = admin.get(f"/v1/resources/workload/{name}/versions", params=params).json()
    assert [v["number"] for v in versions["items"]] == [1, 2]
    assert versions["items"][-1]["spec"]["image"]["image"] == "alpine:3"
    assert versions["items"][0]["spec"]["image"]["image"] == "busybox:1.36"

    events = admin.get(f"/v1/resources/workload/{name}/events", params=params).json()["items"]
    assert [e["reason"] for e in events] == ["Created", "Scaled", "Updated"]
    assert {e["actor"] for e in events} == {"admin"}


def test_describe_shows_every_part(admin: httpx.Client, seeded: Any) -> None:
    name = unique("desc")
    apply(admin, workload_doc(name, workspace=SEED_USER))
    r = admin.get(f"/v1/resources/workload/{name}", params={"workspace": SEED_USER})
    assert r.status_code == 200
    body = r.json()
    for part in ("spec", "meta", "desired", "computed", "observed", "status", "version", "uid"):
        assert part in body
    assert body["desired"] == "run"
    assert body["owner"] == "admin"
    assert body["spec"]["config"]["restartPolicy"] == "Never"  # defaults are stored


def test_pause_resume_and_delete_of_a_workload(admin: httpx.Client, seeded: Any) -> None:
    name = unique("pr")
    params = {"workspace": SEED_USER}
    apply(admin, workload_doc(name, workspace=SEED_USER))
    paused = admin.post(f"/v1/workloads/{name}/pause", params=params)
    assert paused.status_code == 200
    assert (paused.json()["desired"], paused.json()["status"]) == ("pause", "paused")
    resumed = admin.post(f"/v1/workloads/{name}/resume", params=params)
    assert resumed.json()["desired"] == "run"

    gone = admin.delete(f"/v1/resources/workload/{name}", params=params)
    assert gone.status_code == 200
    assert gone.json()["status"] == "draining"
    described = admin.get(f"/v1/resources/workload/{name}", params=params).json()
    assert (described["desired"], described["status"]) == ("drain", "draining")
    # A draining workload can be neither re-applied nor paused.
    again = admin.post("/v1/apply", json=workload_doc(name, workspace=SEED_USER))
    assert again.status_code == 409
    assert "being deleted" in again.json()["message"]
    assert admin.post(f"/v1/workloads/{name}/pause", params=params).status_code == 409
    reasons = [
        e["reason"]
        for e in admin.get(f"/v1/resources/workload/{name}/events", params=params).json()["items"]
    ]
    assert reasons == ["Created", "Paused", "Resumed", "Draining"]


def test_apply_many_reports_each_document(admin: httpx.Client, seeded: Any) -> None:
    good = workload_doc(unique("ok"), workspace=SEED_USER)
    bad = doc("Workload", "broken", {"replica": {"count": -1}}, workspace=SEED_USER)
    r = admin.post("/v1/apply-many", json=[good, bad, "not a document"])
    # A list item that is not an object is refused by the schema as a whole.
    assert r.status_code == 422
    r = admin.post("/v1/apply-many", json=[good, bad])
    assert r.status_code == 200
    first, second = r.json()["items"]
    assert (first["index"], first["ok"], first["result"]["status"]) == (1, True, "created")
    assert (second["index"], second["ok"]) == (2, False)
    assert second["error"]["code"] == "invalid"
    assert second["error"]["field"] == "spec.replica.count"


# ------------------------------------------------------------------ delete rules


def test_workspace_delete_refuses_with_dependents_then_cascades(
    admin: httpx.Client, seeded: Any
) -> None:
    ws = unique("ws")
    make_workspace(admin, ws)
    apply_many(admin, [volume_doc("data", workspace=ws), workload_doc("job", workspace=ws)])
    refused = admin.delete(f"/v1/resources/workspace/{ws}")
    assert refused.status_code == 409
    assert "1 volume" in refused.json()["message"] and "1 workload" in refused.json()["message"]
    assert "cascade" in refused.json()["message"]
    done = admin.delete(f"/v1/resources/workspace/{ws}", params={"cascade": "true"})
    assert done.status_code == 200, done.text
    assert admin.get(f"/v1/resources/workspace/{ws}").status_code == 404
    assert admin.get("/v1/resources/volume/data", params={"workspace": ws}).status_code == 404
    job = admin.get("/v1/resources/workload/job", params={"workspace": ws}).json()
    assert job["desired"] == "drain"  # the scheduler removes it once drained


def test_zone_delete_refuses_while_it_has_nodes(admin: httpx.Client, seeded: Any) -> None:
    r = admin.delete(f"/v1/resources/zone/{ZONE}")
    assert r.status_code == 409
    assert "node" in r.json()["message"] and "cascade" in r.json()["message"]


def test_node_delete_refuses_with_containers_and_cascade_drains_them(
    api: ApiProcess, admin: httpx.Client, seeded: Any
) -> None:
    node = unique("nd")
    apply(admin, node_doc(node))
    container = create_container(api, "job.1", workspace=SEED_USER, node=node)
    refused = admin.delete(f"/v1/resources/node/{node}")
    assert refused.status_code == 409
    assert "1 container" in refused.json()["message"]
    assert admin.delete(f"/v1/resources/node/{node}", params={"cascade": "1"}).status_code == 200
    drained = admin.get(
        f"/v1/resources/container/{container.name}", params={"workspace": SEED_USER}
    ).json()
    assert drained["desired"] == "drain"


def test_read_only_views_cannot_be_deleted(admin: httpx.Client) -> None:
    r = admin.delete("/v1/resources/gpu/anything")
    assert r.status_code == 400
    assert "read-only" in r.json()["message"]


# ------------------------------------------------------------------ client errors

INVALID_DOCUMENTS: list[tuple[str, Any, str]] = [
    ("empty", {}, "apiVersion"),
    ("no-kind", {"apiVersion": "v1", "metadata": {"name": "x"}}, "kind"),
    ("bad-api-version", doc("Zone", "x") | {"apiVersion": "v2"}, "apiVersion"),
    ("unknown-kind", doc("Nope", "x"), "kind"),
    ("read-only-kind", doc("GPU", "x"), "kind"),
    ("container", doc("Container", "x.1", workload_doc("x")["spec"]), "kind"),
    ("metadata-not-mapping", {"apiVersion": "v1", "kind": "Zone", "metadata": "x"}, "metadata"),
    ("bad-name", doc("Zone", "bad name"), "metadata.name"),
    ("unknown-spec-field", doc("Zone", "x", {"bogus": 1}), "spec.bogus"),
    ("spec-not-mapping", {**doc("Zone", "x"), "spec": []}, "spec"),
    ("negative-replicas", doc("Workload", "x", {"replica": {"count": -1}}), "spec.replica.count"),
    ("missing-image", doc("Workload", "x", {"replica": {"count": 1}}), "spec.image"),
    ("unknown-verb", doc("Role", "x", {"permission": {"Workload": ["Aply"]}}), None),
    ("zone-all", workload_doc("x", zone="All"), "metadata.zone"),
    ("missing-zone", workload_doc("x", zone="no-such-zone"), "metadata.zone"),
    ("missing-workspace", workload_doc("x", workspace="no-such-ws"), "metadata.workspace"),
    ("missing-storage", volume_doc("v", storage="no-such-storage"), "spec.storage"),
    (
        "missing-volume",
        workload_doc("x", volumes=[{"name": "no-such-volume", "target": "/data"}]),
        "spec.volumes[0].name",
    ),
    ("nul-in-name", doc("Zone", "a\u0000b"), "metadata.name"),
    ("nan-in-meta", {**workload_doc("x"), "meta": {"a": float("nan")}}, "meta.a"),
    ("lone-surrogate", {**workload_doc("x"), "meta": {"note": "\ud800"}}, "meta.note"),
]


@pytest.mark.parametrize(
    ("document", "field"),
    [pytest.param(d, f, id=i) for i, d, f in INVALID_DOCUMENTS],
)
def test_invalid_documents_get_400_with_the_field(
    admin: httpx.Client, seeded: Any, document: Any, field: str | None
) -> None:
    # json.dumps writes NaN and \ud800 escapes the way a hostile client would.
    r = admin.post(
        "/v1/apply", content=json.dumps(document), headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid"
    assert body["message"]
    if field is None:
        assert body.get("field", "").startswith("spec.permission")
    else:
        assert body["field"] == field


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b"[1, 2]", b'"a string"', b"1e999", b"[" * 5000 + b"]" * 5000],
    ids=["truncated", "empty", "list", "string", "huge-number", "deeply-nested"],
)
def test_malformed_bodies_are_client_errors_with_a_field(admin: httpx.Client, raw: bytes) -> None:
    r = admin.post("/v1/apply", content=raw, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    body = r.json()
    assert body["code"] in ("invalid", "error")
    if r.status_code == 422:
        assert body["field"] == "body"


def test_invalid_token_request_names_the_field(admin: httpx.Client) -> None:
    r = admin.post("/v1/tokens", json={"user": 1, "workspace": "admin"})
    assert r.status_code == 422
    assert r.json()["field"] == "user"
    r = admin.post("/v1/tokens", json={"user": "nobody", "workspace": "admin"})
    assert r.status_code == 400
    assert r.json()["field"] == "user"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/route", 404),
        ("GET", "/v1/resources/nope", 404),
        ("GET", "/v1/resources/workload/no-such-workload", 404),
        ("GET", "/v1/resources/workload/no-such-workload/events", 404),
        ("GET", "/v1/resources/workload/no-such-workload/versions", 404),
        ("DELETE", "/v1/resources/workload/no-such-workload", 404),
        ("POST", "/v1/workloads/no-such-workload/pause", 404),
        ("DELETE", "/v1/tokens/no-such-token", 404),
        ("PUT", "/v1/apply", 405),
        ("GET", "/v1/workloads/x/pause", 405),
    ],
)
def test_unknown_routes_and_resources_answer_json(
    admin: httpx.Client, seeded: Any, method: str, path: str, status: int
) -> None:
    r = admin.request(method, path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert set(r.json()) >= {"code", "message"}


def test_unknown_kind_error_lists_the_valid_kinds(admin: httpx.Client) -> None:
    r = admin.get("/v1/resources/wrkload")
    assert r.status_code == 404
    assert "Workload" in r.json()["message"]


def test_kind_aliases_and_plurals(admin: httpx.Client, seeded: Any) -> None:
    for alias in ("node", "nodes", "Node", "NODES"):
        names = {n["name"] for n in admin.get(f"/v1/resources/{alias}").json()["items"]}
        assert {"node1", "node2"} <= names


def test_concurrent_applies_of_one_workload_create_it_once(
    api: ApiProcess, admin: httpx.Client, seeded: Any
) -> None:
    name = unique("race")

    def go(replicas: int) -> httpx.Response:
        with api.client(api.admin_token()) as c:
            return c.post("/v1/apply", json=workload_doc(name, workspace=SEED_USER))

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(go, range(8)))
    assert [r.status_code for r in replies] == [200] * 8, [r.text for r in replies]
    statuses = sorted(r.json()["status"] for r in replies)
    assert statuses == ["created"] + ["unchanged"] * 7
    events = admin.get(f"/v1/resources/workload/{name}/events", params={"workspace": SEED_USER})
    assert [e["reason"] for e in events.json()["items"]] == ["Created"]


def test_concurrent_scaling_is_never_lost_or_an_error(
    api: ApiProcess, admin: httpx.Client, seeded: Any
) -> None:
    name = unique("scale")
    apply(admin, workload_doc(name, workspace=SEED_USER))

    def go(replicas: int) -> httpx.Response:
        with api.client(api.admin_token()) as c:
            doc_ = workload_doc(name, workspace=SEED_USER, replicas=replicas)
            return c.post("/v1/apply", json=doc_)

    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(go, range(2, 8)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert {r.json()["status"] for r in replies} <= {"scaled", "unchanged"}
    final = admin.get(f"/v1/resources/workload/{name}", params={"workspace": SEED_USER}).json()
    # The last write wins, and every write is one version step with its own event.
    assert final["spec"]["replica"]["count"] in range(2, 8)
    events = admin.get(f"/v1/resources/workload/{name}/events", params={"workspace": SEED_USER})
    scaled = [e for e in events.json()["items"] if e["reason"] == "Scaled"]
    assert len(scaled) == final["version"] - 1
