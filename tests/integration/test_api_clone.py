"""`POST /v1/workspaces/{src}/clone` on a real API server: the new workspace, the
grants copied to the caller and nothing more (the original let users grant themselves
roles this way), 409 for a name that exists or has leftovers, clear 400s, events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dora.store import Key
from tests.helpers import (
    SEED_USER,
    ZONE,
    ApiProcess,
    apply,
    apply_many,
    doc,
    grant,
    make_token,
    role_doc,
    seed_documents,
    server_fixture,
    unique,
    user_doc,
    volume_doc,
    with_store,
    workload_doc,
)

api = server_fixture(name="clone")
OTHER = "team-other"


@pytest.fixture(scope="module")
def admin(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(api.admin_token()) as c:
        apply_many(c, seed_documents())
        apply_many(c, [doc("Workspace", OTHER), volume_doc("data", workspace=OTHER)])
        yield c


@pytest.fixture(scope="module")
def guide_user(api: ApiProcess, admin: httpx.Client) -> Iterator[httpx.Client]:
    """The admin guide's user (role `user`, kind All, in their own workspace)."""
    with api.client(make_token(admin, SEED_USER, SEED_USER).token) as c:
        yield c


def _user_spec(admin: httpx.Client, name: str) -> dict[str, Any]:
    r = admin.get(f"/v1/resources/user/{name}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _clone(c: httpx.Client, src: str, name: str, **params: str) -> httpx.Response:
    return c.post(f"/v1/workspaces/{src}/clone", json={"name": name}, params=params)


def test_the_guides_user_clones_their_workspace_and_works_in_it(
    api: ApiProcess, admin: httpx.Client, guide_user: httpx.Client
) -> None:
    name = unique("exp")
    target = f"{SEED_USER}.{name}"
    before = _user_spec(admin, SEED_USER)
    r = _clone(guide_user, SEED_USER, name)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["workspace"] == target and out["source"] == SEED_USER
    assert out["grants"] == [{"kind": "All", "zone": ZONE, "workspace": target, "role": "user"}]
    # The workspace exists, with an event naming the source and the user.
    assert admin.get(f"/v1/resources/workspace/{target}").status_code == 200
    events = admin.get(f"/v1/resources/workspace/{target}/events").json()["items"]
    assert [(e["reason"], e["actor"]) for e in events] == [("Cloned", SEED_USER)]
    assert SEED_USER in events[0]["message"]
    # The user record gained exactly the copy, with a Granted event.
    after = _user_spec(admin, SEED_USER)
    assert after["spec"]["resources"] == [*before["spec"]["resources"], *out["grants"]]
    assert after["version"] == before["version"] + 1
    user_events = admin.get(f"/v1/resources/user/{SEED_USER}/events").json()["items"]
    assert user_events[-1]["reason"] == "Granted" and target in user_events[-1]["message"]
    # At once, on this replica: the token works in the new workspace.
    made = apply(guide_user, workload_doc(unique("wk")), workspace=target)
    assert made["workspace"] == target
    assert guide_user.get("/v1/resources/workload", params={"workspace": target}).status_code == 200
    whoami = guide_user.get("/v1/whoami").json()
    assert {"kind": "All", "zone": ZONE, "workspace": target, "role": "user"} in whoami["grants"]


def test_a_clone_copies_only_the_grants_held_on_the_source(
    api: ApiProcess, admin: httpx.Client
) -> None:
    """Clone + Workload Get on src gives Clone + Workload Get on the clone, and nothing
    from the grant on every workspace or the one on another workspace."""
    src, who = unique("src"), unique("carol")
    grants = [
        grant("Workspace", "cloner", workspace=src),
        grant("Workload", "reader", workspace=src),
        grant("Volume", "vol-reader", workspace="All"),
        grant("Workload", "writer", workspace=OTHER),
    ]
    apply_many(
        admin,
        [
            doc("Workspace", src),
            role_doc("cloner", {"Workspace": ["Clone"]}),
            role_doc("reader", {"Workload": ["Get"]}),
            role_doc("vol-reader", {"Volume": ["Get"]}),
            role_doc("writer", {"Workload": ["Apply", "Get"]}),
            user_doc(who, grants, workspace=src),
        ],
    )
    apply(admin, workload_doc(unique("theirs")), workspace=src)
    with api.client(make_token(admin, who, src).token) as c:
        r = _clone(c, src, "copy")
        assert r.status_code == 201, r.text
        target = f"{src}.copy"
        assert r.json()["grants"] == [
            {"kind": "Workspace", "zone": ZONE, "workspace": target, "role": "cloner"},
            {"kind": "Workload", "zone": ZONE, "workspace": target, "role": "reader"},
        ]
        assert _user_spec(admin, who)["spec"]["resources"] == [
            *grants,
            *r.json()["grants"],
        ]
        # Workload Get there, not Apply (`writer` was on another workspace)…
        assert c.get("/v1/resources/workload", params={"workspace": target}).status_code == 200
        refused = c.post("/v1/apply", json=workload_doc(unique("x")), params={"workspace": target})
        assert refused.status_code == 403, refused.text
        # …and no new reach into the source or elsewhere.
        assert c.post("/v1/apply", json=workload_doc(unique("x"))).status_code == 403
        # Volume Get comes from the grant on All, which covered every workspace already.
        assert c.get("/v1/resources/volume", params={"workspace": target}).status_code == 200


def test_a_user_without_grants_on_the_source_gets_a_workspace_and_no_grants(
    api: ApiProcess, admin: httpx.Client
) -> None:
    """Clone granted on every workspace: the grant is on All, so it is not copied."""
    who = unique("dave")
    apply_many(
        admin,
        [
            role_doc("any-cloner", {"Workspace": ["Clone"]}),
            user_doc(who, [grant("Workspace", "any-cloner", workspace="All")], workspace=OTHER),
        ],
    )
    before = _user_spec(admin, who)
    with api.client(make_token(admin, who, OTHER).token) as c:
        r = _clone(c, OTHER, unique("n"))
    assert r.status_code == 201, r.text
    assert r.json()["grants"] == []
    after = _user_spec(admin, who)
    assert after["spec"] == before["spec"] and after["version"] == before["version"]


def test_an_existing_name_is_409_and_changes_nothing(
    admin: httpx.Client, guide_user: httpx.Client
) -> None:
    """Joining an existing workspace was the original's escalation: someone else's
    workspace ``amedeo.setti.x`` would have become readable."""
    taken = f"{SEED_USER}.{unique('taken')}"
    apply(admin, doc("Workspace", taken))
    apply(admin, workload_doc(unique("secret")), workspace=taken)
    before = _user_spec(admin, SEED_USER)
    r = _clone(guide_user, SEED_USER, taken.removeprefix(f"{SEED_USER}."))
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "conflict" and "already exists" in r.json()["message"]
    after = _user_spec(admin, SEED_USER)
    assert after["version"] == before["version"]
    assert guide_user.get("/v1/resources/workload", params={"workspace": taken}).status_code == 403


def test_a_name_with_leftovers_from_a_deleted_workspace_is_409(
    admin: httpx.Client, guide_user: httpx.Client
) -> None:
    old = f"{SEED_USER}.{unique('old')}"
    apply(admin, doc("Workspace", old))
    apply(admin, workload_doc(unique("left")), workspace=old)
    gone = admin.delete(f"/v1/resources/workspace/{old}", params={"cascade": "true"})
    assert gone.status_code == 200, gone.text  # the workload drains; no scheduler here
    r = _clone(guide_user, SEED_USER, old.removeprefix(f"{SEED_USER}."))
    assert r.status_code == 409, r.text
    assert "workloads left" in r.json()["message"]
    assert admin.get(f"/v1/resources/workspace/{old}").status_code == 404


def test_a_name_other_users_hold_grants_on_is_409(
    admin: httpx.Client, guide_user: httpx.Client
) -> None:
    """A workspace an admin granted to someone before creating it: cloning into that
    name would share it with them."""
    planned = f"{SEED_USER}.{unique('planned')}"
    apply(admin, user_doc(unique("frank"), [grant("All", "user", workspace=planned)]))
    r = _clone(guide_user, SEED_USER, planned.removeprefix(f"{SEED_USER}."))
    assert r.status_code == 409, r.text
    assert "other users already hold grants" in r.json()["message"]
    assert admin.get(f"/v1/resources/workspace/{planned}").status_code == 404


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad name", "must be a name"),
        ("", "must be a name"),
        ("-x", "must be a name"),
        ("x/../y", "must be a name"),
        ("x" * 254, "253"),
        ("x" * 245, "the new workspace"),  # fine alone, too long after the prefix
    ],
)
def test_bad_names_are_400_naming_field_name(
    guide_user: httpx.Client, name: str, reason: str
) -> None:
    r = _clone(guide_user, SEED_USER, name)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["field"] == "name"
    assert reason in body["message"]


def test_malformed_bodies_are_4xx_json(guide_user: httpx.Client) -> None:
    for body in (None, {}, {"name": 3}, {"name": "x", "extra": 1}, [1]):
        r = guide_user.post(f"/v1/workspaces/{SEED_USER}/clone", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid"


def test_zone_must_be_one_existing_zone(guide_user: httpx.Client, admin: httpx.Client) -> None:
    r = _clone(guide_user, SEED_USER, "z", zone="All")
    assert (r.status_code, r.json()["field"]) == (400, "zone")
    r = _clone(admin, SEED_USER, "z", zone="no-such-zone")
    assert (r.status_code, r.json()["field"]) == (400, "zone")


def test_rbac_is_checked_on_the_source_workspace(
    admin: httpx.Client, guide_user: httpx.Client
) -> None:
    # The guide's user may clone their own workspace only.
    r = _clone(guide_user, OTHER, unique("n"))
    assert r.status_code == 403, r.text
    assert "Clone" in r.json()["message"] and OTHER in r.json()["message"]
    # Nor in another zone (the grant is in dora-cluster-1 only).
    apply(admin, doc("Zone", "dora-cluster-2"))
    r = _clone(guide_user, SEED_USER, unique("n"), zone="dora-cluster-2")
    assert r.status_code == 403, r.text
    # Not knowing a workspace is not a 404 for someone who may not clone it.
    assert _clone(guide_user, "no-such-ws", "n").status_code == 403
    assert _clone(admin, "no-such-ws", "n").status_code == 404
    assert admin.get(f"/v1/resources/workspace/{OTHER}.n").status_code == 404


def test_a_role_without_clone_is_403(api: ApiProcess, admin: httpx.Client) -> None:
    who = unique("erin")
    apply_many(
        admin,
        [
            role_doc("no-clone", {"Workspace": ["Apply", "Delete", "Get"], "Workload": ["Get"]}),
            user_doc(who, [grant("All", "no-clone", workspace=OTHER)], workspace=OTHER),
        ],
    )
    with api.client(make_token(admin, who, OTHER).token) as c:
        r = _clone(c, OTHER, "n")
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    assert admin.get(f"/v1/resources/workspace/{OTHER}.n").status_code == 404


def test_the_new_workspace_is_owned_by_the_caller(
    api: ApiProcess, admin: httpx.Client, guide_user: httpx.Client
) -> None:
    name = unique("own")
    assert _clone(guide_user, SEED_USER, name).status_code == 201
    key = Key("Workspace", "", "", f"{SEED_USER}.{name}")
    record = with_store(api, lambda store: store.get(key))
    assert record.owner == SEED_USER and record.spec == {}
