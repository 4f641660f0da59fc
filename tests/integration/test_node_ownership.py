"""What a node agent owns, and what survives restarts: adoption after an agent restart,
strays removed, foreign containers untouched, two agents on one engine, readiness when
the agent stops, recovery when the API restarts, an unregistered node."""

from __future__ import annotations

import time

from tests.docker_images import ensure_busybox_image
from tests.helpers import ZONE, ApiProcess, unique, user_with_role, wait_until
from tests.integration.node_fixtures import (
    READY_S,
    WORKSPACE,
    NodeCluster,
    cluster_fixture,
    containers_with_id,
    foreign_container,
    inspect,
    node_containers,
    setup_cluster,
    teardown_cluster,
    wait_gone,
)

cluster = cluster_fixture()


def test_agent_restart_adopts_running_containers(cluster: NodeCluster) -> None:
    node = cluster.add_node("adopt")
    agent = cluster.agent(node)
    cluster.wait_ready(node, agent)
    cluster.put(node, "keep.1")
    cluster.put(node, "done.1", cmd="sh -c 'exit 5'", restart="Never")
    running = cluster.wait_state("keep.1", "running", agent=agent)
    exited = cluster.wait_state("done.1", "exited", agent=agent, exit_code=5)
    started_at = inspect(running["container_id"])["State"]["StartedAt"]

    agent.stop()  # SIGTERM: the agent goes, its containers stay
    assert inspect(running["container_id"])["State"]["Running"] is True

    again = cluster.agent(node)
    cluster.wait_ready(node, again)
    # The new agent has looked at Docker with both assignments in hand, and did nothing.
    wait_until(
        lambda: "event=reconcile wants=2 haves=2 actions=0" in again.log_text(),
        within=10,
        what="a reconcile pass of the new agent",
    )
    adopted = cluster.wait_state("keep.1", "running", agent=again)
    assert adopted["container_id"] == running["container_id"]
    assert (
        cluster.wait_state("done.1", "exited", agent=again, exit_code=5)["container_id"]
        == (exited["container_id"])
    )
    assert sorted(node_containers(node)) == sorted(
        [running["container_id"], exited["container_id"]]
    )
    state = inspect(running["container_id"])["State"]
    assert state["Running"] is True and state["StartedAt"] == started_at  # never restarted
    assert "event=started" not in again.log_text()
    assert "event=remove" not in again.log_text()


def test_strays_removed_and_foreign_containers_untouched(cluster: NodeCluster) -> None:
    node = cluster.add_node("own")
    other = cluster.add_node("other")
    stray_labels = [
        f"dora.node={node}",
        f"dora.zone={ZONE}",
        f"dora.workspace={WORKSPACE}",
        "dora.container=ghost.1",
        "dora.uid=gone",
    ]
    stray = foreign_container(*stray_labels)
    unlabelled = foreign_container()
    other_node = foreign_container(
        f"dora.node={other}",
        f"dora.zone={ZONE}",
        f"dora.workspace={WORKSPACE}",
        "dora.container=x.1",
    )
    other_zone = foreign_container(
        f"dora.node={node}",
        "dora.zone=another-zone",
        f"dora.workspace={WORKSPACE}",
        "dora.container=y.1",
    )
    # Same Docker name as an assignment, but no dora labels: not ours, never touched.
    squatter = foreign_container(name=f"dora.{WORKSPACE}.squat.1")

    agent = cluster.agent(node)
    cluster.wait_ready(node, agent)
    cluster.put(node, "real.1")
    cluster.wait_state("real.1", "running", agent=agent)
    wait_gone(stray)
    for cid in (unlabelled, other_node, other_zone, squatter):
        assert inspect(cid)["State"]["Running"] is True, cid

    cluster.put(node, "squat.1")
    observed = cluster.wait_state("squat.1", "failed", agent=agent)
    assert "exists" in observed["reason"]
    assert inspect(squatter)["State"]["Running"] is True


def test_two_agents_on_one_engine_manage_only_their_own(cluster: NodeCluster) -> None:
    node_a, node_b = cluster.add_node("pair-a"), cluster.add_node("pair-b")
    agent_a, agent_b = cluster.agent(node_a), cluster.agent(node_b)
    cluster.wait_ready(node_a, agent_a)
    cluster.wait_ready(node_b, agent_b)
    cluster.put(node_a, "a.1")
    cluster.put(node_b, "b.1")
    obs_a = cluster.wait_state("a.1", "running", agent=agent_a)
    obs_b = cluster.wait_state("b.1", "running", agent=agent_b)
    assert node_containers(node_a) == [obs_a["container_id"]]
    assert node_containers(node_b) == [obs_b["container_id"]]
    assert inspect(obs_a["container_id"])["Config"]["Labels"]["dora.node"] == node_a

    cluster.update("a.1", desired="drain")
    cluster.wait_state("a.1", "deleted", agent=agent_a)
    assert node_containers(node_a) == []
    assert inspect(obs_b["container_id"])["State"]["Running"] is True
    assert cluster.observed("b.1")["container_id"] == obs_b["container_id"]


def test_node_goes_not_ready_when_its_agent_stops(cluster: NodeCluster) -> None:
    node = cluster.add_node("quit")
    agent = cluster.agent(node)
    cluster.wait_ready(node, agent)
    agent.stop()
    stopped = time.monotonic()
    wait_until(
        lambda: cluster.node_status(node).startswith("NOT_READY"),
        within=20,
        what=f"{node} NOT_READY",
    )
    elapsed = time.monotonic() - stopped
    assert elapsed < 20
    assert elapsed >= READY_S - 1.5  # the last report was at most one interval earlier


def test_unregistered_node_waits_then_reports(cluster: NodeCluster) -> None:
    node = "late-" + str(int(time.time() * 1000))[-8:]
    agent = cluster.agent(node)
    wait_until(
        lambda: "is not registered" in agent.log_text(), within=15, what="a clear 404 message"
    )
    assert agent.alive()
    cluster.admin.post(
        "/v1/apply",
        json={
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node, "zone": ZONE},
            "spec": {"endpoint": "https://127.0.0.41:3001"},
        },
    ).raise_for_status()
    cluster.wait_ready(node, agent)
    cluster.put(node, "first.1")
    cluster.wait_state("first.1", "running", agent=agent)


def test_token_without_the_node_role_is_explained(cluster: NodeCluster) -> None:
    node = cluster.add_node("denied")
    token = user_with_role(
        cluster.admin, unique("viewer"), {"Node": ["Get"]}, workspace=WORKSPACE, kind="Node"
    )
    agent = cluster.agent(node, API_TOKEN=token.token)
    wait_until(
        lambda: "give its user a role with Node: [report]" in agent.log_text(),
        within=15,
        what="a clear 403 message",
    )
    assert agent.alive()
    assert token.token not in agent.log_text()
    assert cluster.node_status(node).startswith("NOT_READY")


def test_agent_recovers_when_the_api_restarts(tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """A separate API (this test stops it): the agent keeps its containers while the API
    is down and resumes reporting, and reacting to assignments, once it is back."""
    ensure_busybox_image()
    data_dir = tmp_path_factory.mktemp("node-api-restart")
    api = ApiProcess(data_dir, env={"DORA_NODE_READY_S": str(READY_S)}).start().wait_ready()
    own = setup_cluster(api, data_dir)
    try:
        node = own.add_node("phoenix")
        agent = own.agent(node)
        own.wait_ready(node, agent)
        own.put(node, "steady.1")
        running = own.wait_state("steady.1", "running", agent=agent)

        api.stop(timeout=2)
        wait_until(
            lambda: "cannot reach the API" in agent.log_text(), within=10, what="API down seen"
        )
        assert agent.alive()
        assert inspect(running["container_id"])["State"]["Running"] is True

        back = ApiProcess(
            data_dir, init_db=False, port=api.port, env={"DORA_NODE_READY_S": str(READY_S)}
        )
        own.api = back.start().wait_ready()
        own.wait_ready(node, agent)
        own.put(node, "after.1")
        own.wait_state("after.1", "running", agent=agent)
        assert own.observed("steady.1")["container_id"] == running["container_id"]
        assert containers_with_id(running["container_id"])
    finally:
        teardown_cluster(own)
        api.stop(timeout=2)
