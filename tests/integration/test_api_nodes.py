"""The node channel on a real server: reports (heartbeat + inventory + container
states), node identity, and the assignments long-poll."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import httpx
import pytest

from tests.helpers import (
    NODE_USER,
    SEED_USER,
    ZONE,
    ApiProcess,
    apply,
    apply_many,
    create_container,
    make_token,
    node_doc,
    seed_documents,
    server_fixture,
    unique,
)

api = server_fixture(name="nodes")

REPORT: dict[str, Any] = {
    "version": "0.9.0",
    "arch": "x86_64",
    "cpu_model": "Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz",
    "cpu_count": 4,
    "cpu_load": [0.1, 0.2, 0.3, 0.4],
    "memory_total": 64 * 2**30,
    "memory_available": 60 * 2**30,
    "gpus": [
        {
            "index": 0,
            "minor_number": 0,
            "product_name": "Tesla V100-SXM2-16GB",
            "memory_total_mb": 16160,
            "memory_used_mb": 0,
        }
    ],
}


@pytest.fixture(scope="module")
def admin(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(api.admin_token()) as c:
        apply_many(c, seed_documents())
        yield c


@pytest.fixture(scope="module")
def node(api: ApiProcess, admin: httpx.Client) -> Iterator[httpx.Client]:
    """The guide's node user: ``dora token create node node 1``."""
    with api.client(make_token(admin, NODE_USER, NODE_USER, "1").token) as c:
        yield c


def report(
    c: httpx.Client, name: str, agent: str, body: dict[str, Any] | None = None, **params: str
) -> httpx.Response:
    return c.post(
        f"/v1/nodes/{name}/report",
        json=REPORT if body is None else body,
        headers={"X-Dora-Agent": agent},
        params=params,
    )


def test_node_reports_and_is_ready(admin: httpx.Client, node: httpx.Client) -> None:
    r = report(node, "node1", "agent-1")
    assert r.status_code == 200, r.text
    assert r.json()["node"] == "node1"
    assert r.json()["status"] == "READY"
    nodes = {n["name"]: n for n in admin.get("/v1/resources/nodes").json()["items"]}
    assert nodes["node1"]["status"] == "READY"
    assert nodes["node1"]["observed"]["cpu_model"] == REPORT["cpu_model"]
    assert nodes["node2"]["status"] == "NOT_READY"  # never reported
    gpus = admin.get("/v1/resources/gpu").json()["items"]
    assert [(g["node"], g["spec"]["product_name"]) for g in gpus] == [
        ("node1", "Tesla V100-SXM2-16GB")
    ]
    assert len(admin.get("/v1/resources/cpu").json()["items"]) == 4


def test_second_agent_for_a_fresh_node_gets_409(node: httpx.Client) -> None:
    assert report(node, "node1", "agent-1").status_code == 200
    r = report(node, "node1", "agent-impostor")
    assert r.status_code == 409
    assert "another agent" in r.json()["message"]
    assert report(node, "node1", "agent-1").status_code == 200  # the first goes on


def test_unknown_node_gets_404_at_once(node: httpx.Client) -> None:
    start = time.monotonic()
    r = report(node, "no-such-node", "agent-x")
    assert time.monotonic() - start < 5
    assert r.status_code == 404
    assert "no-such-node" in r.json()["message"]
    assert "apply a Node" in r.json()["message"]
    r = node.get("/v1/nodes/no-such-node/assignments", params={"since": "x", "wait": 5})
    assert r.status_code == 404


def test_report_without_agent_id_is_refused(node: httpx.Client) -> None:
    r = node.post("/v1/nodes/node1/report", json=REPORT)
    assert r.status_code == 400
    assert r.json()["field"] == "X-Dora-Agent"


def test_normal_user_cannot_report_or_poll(api: ApiProcess, admin: httpx.Client) -> None:
    with api.client(make_token(admin, SEED_USER, SEED_USER).token) as user:
        r = report(user, "node1", "agent-1")
        assert r.status_code == 403
        assert user.get("/v1/nodes/node1/assignments").status_code == 403


def test_report_in_another_zone_is_checked_there(admin: httpx.Client, node: httpx.Client) -> None:
    zone = unique("zone")
    apply(admin, {"apiVersion": "v1", "kind": "Zone", "metadata": {"name": zone}})
    apply(admin, node_doc("edge1", zone=zone))
    assert report(node, "edge1", "edge-agent").status_code == 404  # not in the API's zone
    assert report(node, "edge1", "edge-agent", zone=zone).status_code == 200


def test_report_writes_observed_state_of_its_own_containers_only(
    api: ApiProcess, admin: httpx.Client, node: httpx.Client
) -> None:
    mine = create_container(api, f"{unique('job')}.1", workspace=SEED_USER, node="node1")
    theirs = create_container(api, f"{unique('job')}.1", workspace=SEED_USER, node="node2")
    body = dict(REPORT)
    body["containers"] = [
        {"workspace": SEED_USER, "name": mine.name, "state": "running", "container_id": "c1"},
        {"workspace": SEED_USER, "name": theirs.name, "state": "exited", "container_id": "c2"},
    ]
    assert report(node, "node1", "agent-1", body).status_code == 200
    params = {"workspace": SEED_USER}
    seen = admin.get(f"/v1/resources/container/{mine.name}", params=params).json()
    assert seen["observed"]["state"] == "running"
    assert seen["status"] == "running"
    other = admin.get(f"/v1/resources/container/{theirs.name}", params=params).json()
    assert other["observed"] is None  # node1 may not write node2's container


# ------------------------------------------------------------------ assignments


def test_assignments_without_since_return_at_once(node: httpx.Client) -> None:
    start = time.monotonic()
    r = node.get("/v1/nodes/node2/assignments", params={"wait": 20})
    assert r.status_code == 200
    assert time.monotonic() - start < 5
    assert r.json()["cursor"]
    assert isinstance(r.json()["containers"], list)


def test_assignments_with_current_cursor_wait_then_return_it(node: httpx.Client) -> None:
    cursor = node.get("/v1/nodes/node2/assignments").json()["cursor"]
    start = time.monotonic()
    r = node.get("/v1/nodes/node2/assignments", params={"since": cursor, "wait": 1})
    elapsed = time.monotonic() - start
    assert r.status_code == 200
    assert r.json()["cursor"] == cursor
    assert 0.9 <= elapsed < 5, elapsed


def test_assignments_return_early_when_a_container_is_assigned(
    api: ApiProcess, node: httpx.Client
) -> None:
    poll_node = "node2"
    first = node.get(f"/v1/nodes/{poll_node}/assignments").json()
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(
            node.get,
            f"/v1/nodes/{poll_node}/assignments",
            params={"since": first["cursor"], "wait": 20},
        )
        # Nothing changed yet: the poll must still be waiting.
        with pytest.raises(FutureTimeout):
            waiting.result(timeout=0.5)
        name = f"{unique('placed')}.1"
        create_container(api, name, workspace=SEED_USER, node=poll_node, zone=ZONE)
        created = time.monotonic()
        r = waiting.result(timeout=15)
    assert time.monotonic() - created < 5
    assert r.status_code == 200
    body = r.json()
    assert body["cursor"] != first["cursor"]
    assert name in [c["name"] for c in body["containers"]]
    # Polling again with the new cursor waits: nothing else changed.
    again = node.get(
        f"/v1/nodes/{poll_node}/assignments", params={"since": body["cursor"], "wait": 0.3}
    )
    assert again.json()["cursor"] == body["cursor"]


def test_heartbeats_do_not_wake_the_poll(node: httpx.Client) -> None:
    cursor = node.get("/v1/nodes/node1/assignments").json()["cursor"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(
            node.get, "/v1/nodes/node1/assignments", params={"since": cursor, "wait": 1.5}
        )
        for _ in range(3):
            assert report(node, "node1", "agent-1").status_code == 200
        r = waiting.result(timeout=10)
    assert r.json()["cursor"] == cursor
