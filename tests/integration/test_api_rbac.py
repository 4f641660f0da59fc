"""RBAC over real requests: a route × role matrix for every verb the API implements,
and the scope that is checked is the one acted on (cross-workspace, cross-zone,
body-versus-query, volumes of other workspaces).

Each matrix cell names a (kind, verb), the request that exercises it, and where a
grant must reach for it (one workspace, a whole zone, or everywhere). Each cell is
run by these principals:

* ``admin`` (the bootstrap token) and ``granted`` (a role with exactly that verb on
  that kind, plus a baseline some cells need): allowed, with the route's 2xx;
* ``lacks-verb`` (every other verb of the kind): 403;
* ``lacks-kind`` (a grant for kind ``All`` whose role has no entry for the kind, the
  case that made the original answer 500): 403;
* ``guide-role`` (the admin guide's ``user`` role granted in one workspace): allowed
  exactly when the guide's role lists the verb and the cell acts inside a workspace —
  or, for zone-level reads (Get/Describe of CPU, GPU, Storage, …), in that zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from dora.model import VERBS
from dora.store import Key, NewRecord, Store
from tests.helpers import (
    NODE_USER,
    SEED_USER,
    ZONE,
    ApiProcess,
    apply,
    apply_many,
    create_container,
    doc,
    grant,
    make_token,
    node_doc,
    role_doc,
    seed_documents,
    server_fixture,
    storage_mounts_env,
    unique,
    user_doc,
    user_with_role,
    volume_doc,
    with_store,
    workload_doc,
)

TEAM_A, TEAM_B = "team-a", "team-b"
OTHER_ZONE = "dora-cluster-2"
GUIDE_ROLE: dict[str, list[str]] = next(
    d["spec"]["permission"]
    for d in seed_documents()
    if d["kind"] == "Role" and d["metadata"]["name"] == "user"
)

api = server_fixture(name="rbac", env=storage_mounts_env)
"""The seed's NFS storage is "mounted" at a plain folder, so the file verbs act."""


@dataclass
class World:
    api: ApiProcess
    admin: httpx.Client
    tokens: dict[str, str] = field(default_factory=dict)

    def as_(self, principal: str) -> httpx.Client:
        return self.api.client(self.tokens[principal])

    def ws(self, path: str, **params: str) -> tuple[str, dict[str, str]]:
        return path, {"workspace": TEAM_A, **params}


Action = Callable[[World, httpx.Client, str], httpx.Response]


@dataclass(frozen=True)
class Cell:
    kind: str
    verb: str
    reach: str
    """``workspace`` (grant in team-a), ``zone`` (every workspace of the zone),
    ``token`` (zone All, workspace team-a) or ``global`` (zone and workspace All)."""
    action: Action
    ok: int = 200
    baseline: dict[str, list[str]] = field(default_factory=dict)
    zone_read: bool = False
    """A read of a zone-level kind: a grant in any workspace of the zone allows it."""

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.verb}"


# ---------------------------------------------------------------- the requests


def _get(path: str, **params: str) -> Action:
    return lambda w, c, n: c.get(path.format(n=n), params=params)


def _ws_get(path: str) -> Action:
    return lambda w, c, n: c.get(path.format(n=n), params={"workspace": TEAM_A})


def _with_workload(then: Callable[[World, httpx.Client, str], httpx.Response]) -> Action:
    def act(w: World, c: httpx.Client, n: str) -> httpx.Response:
        apply(w.admin, workload_doc(n, workspace=TEAM_A))
        return then(w, c, n)

    return act


def _resume(w: World, c: httpx.Client, n: str) -> httpx.Response:
    apply(w.admin, workload_doc(n, workspace=TEAM_A))
    assert w.admin.post(f"/v1/workloads/{n}/pause", params={"workspace": TEAM_A}).is_success
    return c.post(f"/v1/workloads/{n}/resume", params={"workspace": TEAM_A})


def _with_container(then: Callable[[httpx.Client, str], httpx.Response]) -> Action:
    def act(w: World, c: httpx.Client, n: str) -> httpx.Response:
        key = create_container(w.api, f"{n}.1", workspace=TEAM_A, node="node1")
        return then(c, key.name)

    return act


def _running_container(w: World, n: str, *, desired: str = "run") -> str:
    """A workload and its running replica on node1 (as scheduler and agent would
    leave them): the container verbs that act on a live container need both."""
    apply(w.admin, workload_doc(n, workspace=TEAM_A))
    key = Key("Container", ZONE, TEAM_A, f"{n}.1")
    record = NewRecord(
        key=key,
        spec={"image": {"image": "busybox:1.36"}, "replica": {"count": 1}},
        owner="scheduler",
        desired=desired,  # type: ignore[arg-type]
        node="node1",
        parent=n,
        computed={"node": "node1", "cpus": [0]},
        observed={"state": "paused" if desired == "pause" else "running"},
    )

    async def create(store: Store) -> None:
        await store.create(record, actor="scheduler")

    with_store(w.api, create)
    return key.name


def _container_post(verb: str, *, desired: str = "run") -> Action:
    def act(w: World, c: httpx.Client, n: str) -> httpx.Response:
        name = _running_container(w, n, desired=desired)
        return c.post(f"/v1/containers/{name}/{verb}", params={"workspace": TEAM_A})

    return act


def _with_doc(make: Callable[[str], dict[str, Any]], then: Action) -> Action:
    def act(w: World, c: httpx.Client, n: str) -> httpx.Response:
        apply(w.admin, make(n))
        return then(w, c, n)

    return act


def _apply(make: Callable[[str], dict[str, Any]]) -> Action:
    return lambda w, c, n: c.post("/v1/apply", json=make(n))


def _delete(kind: str, **params: str) -> Action:
    return lambda w, c, n: c.delete(f"/v1/resources/{kind}/{n}", params=params)


def _report(w: World, c: httpx.Client, n: str) -> httpx.Response:
    apply(w.admin, node_doc(n))
    return c.post(
        f"/v1/nodes/{n}/report", json={"version": "0.9.0"}, headers={"X-Dora-Agent": f"agent-{n}"}
    )


def _assignments(w: World, c: httpx.Client, n: str) -> httpx.Response:
    apply(w.admin, node_doc(n))
    return c.get(f"/v1/nodes/{n}/assignments")


def _token_create(w: World, c: httpx.Client, n: str) -> httpx.Response:
    me = c.get("/v1/whoami").json()["user"]
    return c.post("/v1/tokens", json={"user": me, "workspace": TEAM_A, "id": n})


def _token_revoke(w: World, c: httpx.Client, n: str) -> httpx.Response:
    victim = make_token(w.admin, "admin", "admin", n)
    return c.delete(f"/v1/tokens/{victim.jti}")


def _clone(w: World, c: httpx.Client, n: str) -> httpx.Response:
    return c.post(f"/v1/workspaces/{TEAM_A}/clone", json={"name": n})


def _use_volume(w: World, c: httpx.Client, n: str) -> httpx.Response:
    mounts = [{"name": "data", "target": "/data"}]
    return c.post("/v1/apply", json=workload_doc(n, workspace=TEAM_A, volumes=mounts))


def _begin_upload(w: World, c: httpx.Client, n: str) -> httpx.Response:
    body = {"path": f"{n}.txt", "size": 0, "mtime": 1.0}
    return c.post("/v1/volumes/data/uploads", params={"workspace": TEAM_A}, json=body)


def _upload_chunk(w: World, c: httpx.Client, n: str) -> httpx.Response:
    body = {"path": f"{n}.bin", "size": 1, "mtime": 1.0}
    started = w.admin.post("/v1/volumes/data/uploads", params={"workspace": TEAM_A}, json=body)
    assert started.status_code == 200, started.text
    return c.patch(
        f"/v1/volumes/data/uploads/{started.json()['id']}",
        params={"workspace": TEAM_A},
        headers={"Upload-Offset": "0"},
        content=b"x",
    )


WS = "workspace"
CELLS = [
    # Workload: everything happens inside one workspace.
    Cell("Workload", "Apply", WS, _apply(lambda n: workload_doc(n, workspace=TEAM_A))),
    Cell("Workload", "Delete", WS, _with_workload(_delete("workload", workspace=TEAM_A))),
    Cell("Workload", "Get", WS, _ws_get("/v1/resources/workload")),
    Cell("Workload", "Describe", WS, _with_workload(_ws_get("/v1/resources/workload/{n}"))),
    Cell(
        "Workload",
        "Pause",
        WS,
        _with_workload(
            lambda w, c, n: c.post(f"/v1/workloads/{n}/pause", params={"workspace": TEAM_A})
        ),
    ),
    Cell("Workload", "Resume", WS, _resume),
    Cell("Workload", "Event", WS, _with_workload(_ws_get("/v1/resources/workload/{n}/events"))),
    Cell("Workload", "Version", WS, _with_workload(_ws_get("/v1/resources/workload/{n}/versions"))),
    # Container: made by the scheduler (here: written to the store directly).
    Cell("Container", "Get", WS, _ws_get("/v1/resources/container")),
    Cell(
        "Container",
        "Describe",
        WS,
        _with_container(
            lambda c, name: c.get(f"/v1/resources/container/{name}", params={"workspace": TEAM_A})
        ),
    ),
    Cell(
        "Container",
        "Delete",
        WS,
        _with_container(
            lambda c, name: c.delete(
                f"/v1/resources/container/{name}", params={"workspace": TEAM_A}
            )
        ),
    ),
    Cell("Container", "Token", WS, _container_post("token")),
    Cell("Container", "Pause", WS, _container_post("pause")),
    Cell("Container", "Resume", WS, _container_post("resume", desired="pause")),
    Cell(
        "Container",
        "Event",
        WS,
        _with_container(
            lambda c, name: c.get(
                f"/v1/resources/container/{name}/events", params={"workspace": TEAM_A}
            )
        ),
    ),
    # Volume: its own verbs, and Use when a workload mounts one.
    Cell("Volume", "Apply", WS, _apply(lambda n: volume_doc(n, workspace=TEAM_A))),
    Cell("Volume", "Get", WS, _ws_get("/v1/resources/volume")),
    Cell(
        "Volume",
        "Describe",
        WS,
        _with_doc(lambda n: volume_doc(n, workspace=TEAM_A), _ws_get("/v1/resources/volume/{n}")),
    ),
    Cell(
        "Volume",
        "Delete",
        WS,
        _with_doc(lambda n: volume_doc(n, workspace=TEAM_A), _delete("volume", workspace=TEAM_A)),
    ),
    Cell("Volume", "Use", WS, _use_volume, baseline={"Workload": ["Apply"]}),
    # Volume files (the seed's NFS storage, mounted on the API host for the test).
    Cell("Volume", "Ls", WS, _ws_get("/v1/volumes/data/files")),
    Cell("Volume", "Sync", WS, _ws_get("/v1/volumes/data/manifest")),
    Cell("Volume", "Download", WS, _ws_get("/v1/volumes/data/download")),
    Cell("Volume", "Upload", WS, _begin_upload),
    Cell("Volume", "Upload", WS, _upload_chunk),
    # Zone-level kinds.
    Cell("Node", "Report", "zone", _report),
    Cell("Node", "Report", "zone", _assignments),
    Cell("Node", "Get", "zone", _get("/v1/resources/node"), zone_read=True),
    Cell("Node", "Describe", "zone", _get("/v1/resources/node/node1"), zone_read=True),
    Cell("Node", "Apply", "zone", _apply(node_doc)),
    Cell("Node", "Delete", "zone", _with_doc(node_doc, _delete("node"))),
    Cell("GPU", "Get", "zone", _get("/v1/resources/gpu"), zone_read=True),
    Cell("CPU", "Get", "zone", _get("/v1/resources/cpu"), zone_read=True),
    Cell("Storage", "Get", "zone", _get("/v1/resources/storage"), zone_read=True),
    Cell(
        "Storage", "Describe", "zone", _get("/v1/resources/storage/dora.storage.01"), zone_read=True
    ),
    Cell("Resourcecredit", "Get", "zone", _get("/v1/resources/rc"), zone_read=True),
    # Tokens.
    Cell("Token", "Create", "token", _token_create, ok=201),
    Cell("Token", "List", "global", _get("/v1/tokens", user="admin")),
    Cell("Token", "Revoke", "global", _token_revoke),
    # Global kinds: only a grant with zone All and workspace All reaches them.
    Cell("User", "Apply", "global", _apply(lambda n: user_doc(n, []))),
    Cell("User", "Delete", "global", _with_doc(lambda n: user_doc(n, []), _delete("user"))),
    Cell("User", "Get", "global", _get("/v1/resources/user")),
    Cell("Role", "Apply", "global", _apply(lambda n: role_doc(n, {"Workload": ["Get"]}))),
    Cell(
        "Role",
        "Delete",
        "global",
        _with_doc(lambda n: role_doc(n, {"Workload": ["Get"]}), _delete("role")),
    ),
    Cell("Zone", "Apply", "global", _apply(lambda n: doc("Zone", n))),
    Cell("Zone", "Delete", "global", _with_doc(lambda n: doc("Zone", n), _delete("zone"))),
    Cell("Workspace", "Apply", "global", _apply(lambda n: doc("Workspace", n))),
    Cell(
        "Workspace",
        "Delete",
        "global",
        _with_doc(lambda n: doc("Workspace", n), _delete("workspace")),
    ),
    # The guide's user role: clone your workspace, read your credits (in team-a).
    Cell("Workspace", "Clone", WS, _clone, ok=201),
    Cell("User", "Credits", WS, _get("/v1/users/me/credits")),
]
PRINCIPALS = ("admin", "granted", "lacks-verb", "lacks-kind", "guide-role")


def _scope(reach: str) -> dict[str, str]:
    return {
        "workspace": {"zone": ZONE, "workspace": TEAM_A},
        "zone": {"zone": ZONE, "workspace": "All"},
        "token": {"zone": "All", "workspace": TEAM_A},
        "global": {"zone": "All", "workspace": "All"},
    }[reach]


def _principal_docs(index: int, cell: Cell, principal: str) -> tuple[str, list[dict[str, Any]]]:
    """The role and user of one principal of one cell."""
    name = f"m{index}-{principal}"
    role = f"{name}-role"
    scope = _scope(cell.reach)
    if principal == "guide-role":
        return name, [user_doc(name, [grant("All", "user", zone=ZONE, workspace=TEAM_A)])]
    permission = {k: list(v) for k, v in cell.baseline.items()}
    if principal == "granted":
        permission[cell.kind] = [cell.verb]
    elif principal == "lacks-verb":
        permission[cell.kind] = [v for v in VERBS if v.lower() != cell.verb.lower()]
    elif principal == "lacks-kind":
        others = ("Workload", "Volume", "Node", "User")
        permission.update({k: list(VERBS) for k in others if k != cell.kind})
    if principal == "lacks-kind":
        grants = [grant("All", role, **scope)]
    else:
        grants = [grant(kind, role, **scope) for kind in permission]
    return name, [role_doc(role, permission), user_doc(name, grants, workspace=TEAM_A)]


def expected(cell: Cell, principal: str) -> int:
    if principal in ("admin", "granted"):
        return cell.ok
    if principal == "guide-role":
        verbs = {v.lower() for v in GUIDE_ROLE.get(cell.kind, [])}
        needs = {cell.kind: cell.verb, **{k: v[0] for k, v in cell.baseline.items()}}
        listed = all(
            v.lower() in {x.lower() for x in GUIDE_ROLE.get(k, [])} for k, v in needs.items()
        )
        reaches = cell.reach == WS or cell.zone_read
        return cell.ok if listed and cell.verb.lower() in verbs and reaches else 403
    return 403


@pytest.fixture(scope="module")
def world(api: ApiProcess) -> Iterator[World]:
    with api.client(api.admin_token()) as admin:
        apply_many(admin, seed_documents())
        apply_many(
            admin,
            [
                doc("Workspace", TEAM_A),
                doc("Workspace", TEAM_B),
                doc("Zone", OTHER_ZONE),
                volume_doc("data", workspace=TEAM_A),
                volume_doc("shared", workspace=TEAM_B),
            ],
        )
        w = World(api, admin, {"admin": api.admin_token()})
        docs: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        for index, cell in enumerate(CELLS):
            for principal in PRINCIPALS[1:]:
                name, made = _principal_docs(index, cell, principal)
                docs += made
                names[f"{index}/{principal}"] = name
        apply_many(admin, docs)
        for key, name in names.items():
            w.tokens[key] = make_token(admin, name, TEAM_A).token
        yield w


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize(
    "index", range(len(CELLS)), ids=[f"{c.id}-{i}" for i, c in enumerate(CELLS)]
)
def test_route_role_matrix(world: World, index: int, principal: str) -> None:
    cell = CELLS[index]
    token = world.tokens["admin" if principal == "admin" else f"{index}/{principal}"]
    with world.api.client(token) as c:
        r = cell.action(world, c, unique("m"))
    want = expected(cell, principal)
    assert r.status_code == want, f"{cell.id} as {principal}: {r.status_code} {r.text}"
    if want == 403:
        body = r.json()
        assert body["code"] == "forbidden"
        assert cell.verb.lower() in body["message"].lower()


def test_the_matrix_covers_every_verb_the_api_implements() -> None:
    covered = {(c.kind, c.verb) for c in CELLS}
    for kind in ("Workload",):
        for verb in ("Apply", "Delete", "Get", "Describe", "Pause", "Resume", "Event", "Version"):
            assert (kind, verb) in covered
    for pair in [
        ("Container", "Get"),
        ("Container", "Describe"),
        ("Container", "Delete"),
        ("Container", "Token"),
        ("Container", "Pause"),
        ("Container", "Resume"),
        ("Container", "Event"),
        ("Volume", "Apply"),
        ("Volume", "Get"),
        ("Volume", "Delete"),
        ("Volume", "Use"),
        ("Volume", "Ls"),
        ("Volume", "Upload"),
        ("Volume", "Download"),
        ("Volume", "Sync"),
        ("Node", "Report"),
        ("Node", "Get"),
        ("Token", "Create"),
        ("Token", "List"),
        ("Token", "Revoke"),
        ("GPU", "Get"),
        ("CPU", "Get"),
        ("Workspace", "Clone"),
        ("User", "Credits"),
    ]:
        assert pair in covered
    for kind in ("User", "Role", "Zone", "Workspace"):
        assert {(kind, "Apply"), (kind, "Delete")} <= covered
    # Every Container verb the guide's user role lists: a cell here, or Shell and Log
    # (tests/integration/test_exec_security.py, test_exec_token.py), or Apply, which
    # no role unlocks (test_containers_are_never_applied).
    elsewhere = {"shell", "log", "apply"}
    for verb in GUIDE_ROLE["Container"]:
        assert ("Container", verb) in covered or verb.lower() in elsewhere, verb


def test_containers_are_never_applied(world: World) -> None:
    """The scheduler makes containers from a Workload: applying one is refused with a
    400 that says so, whatever the caller's roles (the guide's role lists Apply)."""
    d = doc("Container", "hand-made.1", {"image": {"image": "busybox"}}, workspace=TEAM_A)
    index = next(i for i, c in enumerate(CELLS) if c.id == "Container-Token")
    for token in (world.tokens["admin"], world.tokens[f"{index}/guide-role"]):
        with world.api.client(token) as c:
            r = c.post("/v1/apply", json=d)
        assert r.status_code == 400, r.text
        assert r.json()["field"] == "kind"
        assert "made by the scheduler from a Workload" in r.json()["message"]


# ------------------------------------------------------------ scope actually acted on


@pytest.fixture(scope="module")
def alice(world: World) -> Iterator[httpx.Client]:
    """The guide's ``user`` role in team-a only."""
    name = "alice"
    apply_many(
        world.admin, [user_doc(name, [grant("All", "user", workspace=TEAM_A)], workspace=TEAM_A)]
    )
    with world.api.client(make_token(world.admin, name, TEAM_A).token) as c:
        yield c


def test_own_workspace_works(alice: httpx.Client) -> None:
    assert apply(alice, workload_doc(unique("own")))["workspace"] == TEAM_A
    assert alice.get("/v1/resources/workload").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/v1/resources/workload", {"workspace": TEAM_B}),
        ("GET", "/v1/resources/workload/x", {"workspace": TEAM_B}),
        ("GET", "/v1/resources/workload/x/events", {"workspace": TEAM_B}),
        ("GET", "/v1/resources/workload/x/versions", {"workspace": TEAM_B}),
        ("DELETE", "/v1/resources/workload/x", {"workspace": TEAM_B}),
        ("POST", "/v1/workloads/x/pause", {"workspace": TEAM_B}),
        ("POST", "/v1/containers/x.1/token", {"workspace": TEAM_B}),
        ("POST", "/v1/containers/x.1/pause", {"workspace": TEAM_B}),
        ("POST", "/v1/containers/x.1/resume", {"workspace": TEAM_B}),
        ("GET", "/v1/resources/container/x.1/events", {"workspace": TEAM_B}),
        ("GET", "/v1/resources/volume", {"workspace": TEAM_B}),
        ("GET", "/v1/volumes/shared/files", {"workspace": TEAM_B}),
        ("GET", "/v1/volumes/shared/download", {"workspace": TEAM_B}),
        ("GET", "/v1/volumes/shared/manifest", {"workspace": TEAM_B}),
        ("GET", "/v1/resources/workload", {"zone": OTHER_ZONE}),
        ("GET", "/v1/resources/workload", {"zone": OTHER_ZONE, "workspace": TEAM_A}),
        ("GET", "/v1/resources/gpu", {"zone": OTHER_ZONE}),
    ],
)
def test_other_workspaces_and_zones_are_forbidden_by_query(
    alice: httpx.Client, method: str, path: str, params: dict[str, str]
) -> None:
    r = alice.request(method, path, params=params)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden"


def test_document_naming_another_workspace_is_forbidden(alice: httpx.Client) -> None:
    r = alice.post("/v1/apply", json=workload_doc(unique("x"), workspace=TEAM_B))
    assert r.status_code == 403
    assert TEAM_B in r.json()["message"]
    d = workload_doc(unique("x"))
    d["metadata"]["group"] = TEAM_B  # the original checked the default workspace here
    assert alice.post("/v1/apply", json=d).status_code == 403


def test_document_naming_another_zone_is_forbidden(alice: httpx.Client) -> None:
    r = alice.post("/v1/apply", json=workload_doc(unique("x"), zone=OTHER_ZONE))
    assert r.status_code == 403
    assert OTHER_ZONE in r.json()["message"]


@pytest.mark.parametrize("label", ["workspace", "zone"])
def test_body_and_query_that_disagree_are_refused(alice: httpx.Client, label: str) -> None:
    d = workload_doc(unique("x"), workspace=TEAM_A, zone=ZONE)
    other = {"workspace": TEAM_B, "zone": OTHER_ZONE}[label]
    r = alice.post("/v1/apply", json=d, params={label: other})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == f"metadata.{label}"
    assert other in r.json()["message"]


def test_body_and_query_that_agree_are_fine(alice: httpx.Client) -> None:
    d = workload_doc(unique("x"), workspace=TEAM_A)
    assert alice.post("/v1/apply", json=d, params={"workspace": TEAM_A}).status_code == 200


def test_query_workspace_applies_to_a_document_without_one(
    world: World, alice: httpx.Client
) -> None:
    r = alice.post("/v1/apply", json=workload_doc(unique("x")), params={"workspace": TEAM_B})
    assert r.status_code == 403
    name = unique("x")
    assert apply(world.admin, workload_doc(name), workspace=TEAM_B)["workspace"] == TEAM_B


def test_mounting_another_workspaces_volume_needs_use_there(
    world: World, alice: httpx.Client
) -> None:
    foreign = [{"name": "shared", "workspace": TEAM_B, "target": "/shared"}]
    r = alice.post("/v1/apply", json=workload_doc(unique("x"), volumes=foreign))
    assert r.status_code == 403
    assert "Use" in r.json()["message"] and TEAM_B in r.json()["message"]
    # `group` is the guide's synonym of `workspace` in a volume entry: same rule.
    legacy = [{"name": "shared", "group": TEAM_B, "target": "/shared"}]
    assert (
        alice.post("/v1/apply", json=workload_doc(unique("x"), volumes=legacy)).status_code == 403
    )
    # With Volume Use granted in team-b too, the same mount is accepted.
    apply_many(
        world.admin,
        [
            role_doc("volume-user", {"Volume": ["Use"]}),
            user_doc(
                "bob",
                [
                    grant("All", "user", workspace=TEAM_A),
                    grant("Volume", "volume-user", workspace=TEAM_B),
                ],
                workspace=TEAM_A,
            ),
        ],
    )
    with world.api.client(make_token(world.admin, "bob", TEAM_A).token) as bob:
        ok = bob.post("/v1/apply", json=workload_doc(unique("x"), volumes=foreign))
        assert ok.status_code == 200, ok.text
        # …but Use in team-b is not Get there.
        assert bob.get("/v1/resources/volume", params={"workspace": TEAM_B}).status_code == 403


def test_listing_all_workspaces_shows_only_granted_ones(world: World, alice: httpx.Client) -> None:
    apply(world.admin, workload_doc(unique("secret"), workspace=TEAM_B))
    apply(alice, workload_doc(unique("mine")))
    items = alice.get("/v1/resources/workload", params={"all": "true"}).json()["items"]
    assert items
    assert {i["workspace"] for i in items} == {TEAM_A}
    everything = world.admin.get("/v1/resources/workload", params={"all": "true", "zone": "All"})
    assert {TEAM_A, TEAM_B} <= {i["workspace"] for i in everything.json()["items"]}


def test_user_cannot_create_tokens_for_others_or_grant_themselves_roles(
    world: World, alice: httpx.Client
) -> None:
    r = alice.post("/v1/tokens", json={"user": "admin", "workspace": "admin"})
    assert r.status_code == 403
    mine = user_doc("alice", [grant("All", "admin", zone="All", workspace="All")])
    assert alice.post("/v1/apply", json=mine).status_code == 403
    assert alice.get("/v1/tokens", params={"user": "admin"}).status_code == 403


def test_the_guides_node_user_may_only_report(world: World) -> None:
    token = make_token(world.admin, NODE_USER, NODE_USER).token
    with world.api.client(token) as node:
        assert node.get("/v1/resources/node").status_code == 403
        assert node.post("/v1/apply", json=workload_doc(unique("x"))).status_code == 403
        r = node.post(
            "/v1/nodes/node2/report", json={"version": "0.9.0"}, headers={"X-Dora-Agent": "n2"}
        )
        assert r.status_code == 200, r.text


def test_the_guides_user_in_its_own_workspace(world: World) -> None:
    token = make_token(world.admin, SEED_USER, SEED_USER).token
    with world.api.client(token) as user:
        assert apply(user, workload_doc(unique("x")))["workspace"] == SEED_USER
        mounts = [{"name": "home", "target": "/home"}]
        assert apply(user, workload_doc(unique("x"), volumes=mounts))["status"] == "created"
        for kind in ("gpu", "cpu", "storage", "rc"):
            r = user.get(f"/v1/resources/{kind}")
            assert r.status_code == 200, f"{kind}: {r.text}"
            # Every zone: only the zones the user's grants reach.
            everywhere = user.get(f"/v1/resources/{kind}", params={"zone": "All"})
            assert everywhere.status_code == 200, f"{kind}: {everywhere.text}"
            assert {i["zone"] for i in everywhere.json()["items"]} <= {ZONE}
        assert user.get("/v1/resources/storage", params={"zone": OTHER_ZONE}).status_code == 403
        assert user.get("/v1/resources/node").status_code == 403
        assert user.get("/v1/resources/workload", params={"workspace": TEAM_A}).status_code == 403


def test_a_workspace_grant_reads_but_never_writes_zone_level_kinds(world: World) -> None:
    """Reading the zone's inventory from one workspace is allowed (the guide's user
    role relies on it); changing nodes or storages needs a grant on the whole zone."""
    verbs = ["Get", "Describe", "Apply", "Delete", "Report", "Event"]
    token = user_with_role(
        world.admin,
        "ws-operator",
        {"Node": verbs, "Storage": verbs, "GPU": ["Get"]},
        workspace=TEAM_A,
    )
    apply(world.admin, node_doc("doomed"))
    with world.api.client(token.token) as c:
        assert c.get("/v1/resources/node").status_code == 200
        assert c.get("/v1/resources/node/doomed").status_code == 200
        assert c.get("/v1/resources/storage/dora.storage.01").status_code == 200
        assert c.delete("/v1/resources/node/doomed").status_code == 403
        assert c.post("/v1/apply", json=node_doc(unique("n"))).status_code == 403
        assert c.delete("/v1/resources/storage/dora.storage.01").status_code == 403
        r = c.post("/v1/nodes/doomed/report", json={"version": "1"}, headers={"X-Dora-Agent": "a"})
        assert r.status_code == 403
        assert c.get("/v1/resources/node/doomed/events").status_code == 403
