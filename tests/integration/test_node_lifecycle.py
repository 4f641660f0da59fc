"""The node agent runs assigned containers for real: a real API server (SQLite), real
``dora server node`` processes, the real Docker engine, a busybox image built with
``docker import``. Container records are written into the store as the scheduler
would; the tests watch what the agent reports through the API and what Docker holds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.docker_images import BUSYBOX_IMAGE, remove_image, tag_image
from tests.helpers import wait_until
from tests.integration.node_fixtures import (
    SESSION,
    TEST_LABEL,
    WORKSPACE,
    AgentProcess,
    NodeCluster,
    cluster_fixture,
    docker,
    inspect,
    node_containers,
    wait_gone,
)

cluster = cluster_fixture()


@pytest.fixture
def node(cluster: NodeCluster) -> Iterator[tuple[str, AgentProcess]]:
    """A fresh node with its agent running and READY."""
    name = cluster.add_node("life")
    agent = cluster.agent(name)
    cluster.wait_ready(name, agent)
    yield name, agent
    agent.stop()


def test_assigned_container_runs_and_drain_removes_it(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    name, agent = node
    record = cluster.put(
        name, "web.1", cmd=["sh", "-c", "echo hello from $DORA_CONTAINER; sleep 3600"]
    )
    observed = cluster.wait_state("web.1", "running", agent=agent)
    assert observed["uid"] == record.uid

    ids = node_containers(name)
    assert ids == [observed["container_id"]]
    data = inspect(ids[0])
    assert data["Name"] == f"/dora.{WORKSPACE}.web.1"
    labels = data["Config"]["Labels"]
    assert labels["dora.node"] == name
    assert labels["dora.zone"] == "dora-cluster-1"
    assert labels["dora.workspace"] == WORKSPACE
    assert labels["dora.workload"] == "web"
    assert labels["dora.container"] == "web.1"
    assert labels["dora.uid"] == record.uid
    assert labels["dora.version"] == "1"
    assert labels[TEST_LABEL] == SESSION
    assert data["Config"]["Tty"] is False
    assert data["HostConfig"]["AutoRemove"] is False
    assert data["HostConfig"]["Privileged"] is False
    assert data["HostConfig"]["SecurityOpt"] == ["no-new-privileges"]
    assert data["HostConfig"]["NetworkMode"] == "none"
    assert not data["HostConfig"].get("Binds")
    wait_until(
        lambda: "hello from web.1" in docker("logs", ids[0]), within=10, what="container log"
    )

    cluster.update("web.1", desired="drain")
    cluster.wait_state("web.1", "deleted", agent=agent)
    assert node_containers(name) == []


def test_restart_never_keeps_the_exit_code(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    name, agent = node
    cluster.put(name, "once.1", cmd="sh -c 'echo bye; exit 3'", restart="Never")
    observed = cluster.wait_state("once.1", "exited", agent=agent, exit_code=3)
    assert observed["restarts"] == 0
    assert observed["finished_at"] >= observed["started_at"]
    # Kept for its logs and exit code, not restarted.
    (cid,) = node_containers(name)
    assert cid == observed["container_id"]
    state = inspect(cid)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 3
    assert "bye" in docker("logs", cid)


def test_on_failure_restarts_until_success(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    """Docker keeps the container's file system across our restarts: the second run
    finds the marker of the first and succeeds."""
    name, agent = node
    script = "if [ -f /tmp/ran ]; then echo second; exit 0; fi; touch /tmp/ran; exit 7"
    cluster.put(name, "retry.1", cmd=["sh", "-c", script], restart="OnFailure")
    observed = cluster.wait_state("retry.1", "exited", agent=agent, exit_code=0, restarts=1)
    assert observed["reason"] is None
    (cid,) = node_containers(name)
    assert cid == observed["container_id"]  # restarted in place, not re-created


def test_on_failure_crash_loop_gives_up(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    name, agent = node
    cluster.put(name, "crash.1", cmd="sh -c 'exit 2'", restart="OnFailure")
    observed = cluster.wait_state("crash.1", "failed", agent=agent, within=30)
    assert observed["reason"].startswith("crash loop: exited with code 2")
    assert observed["exit_code"] == 2
    assert observed["restarts"] == 3  # limit 4 in these tests: 1 run + 3 restarts
    (cid,) = node_containers(name)
    assert inspect(cid)["State"]["Status"] == "exited"  # kept, logs readable


def test_always_restarts_even_after_success(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    name, agent = node
    cluster.put(name, "loop.1", cmd="sh -c 'echo tick'", restart="Always")
    observed = cluster.wait_state("loop.1", "failed", agent=agent, within=30)
    assert observed["reason"].startswith("crash loop: exited with code 0")
    assert observed["restarts"] == 3
    (cid,) = node_containers(name)
    assert docker("logs", cid).count("tick") == 4


def test_pause_and_resume(cluster: NodeCluster, node: tuple[str, AgentProcess]) -> None:
    name, agent = node
    cluster.put(name, "nap.1")
    running = cluster.wait_state("nap.1", "running", agent=agent)
    cluster.update("nap.1", desired="pause")
    cluster.wait_state("nap.1", "paused", agent=agent)
    assert inspect(running["container_id"])["State"]["Paused"] is True
    cluster.update("nap.1", desired="run")
    resumed = cluster.wait_state("nap.1", "running", agent=agent)
    assert resumed["container_id"] == running["container_id"]
    assert inspect(running["container_id"])["State"]["Paused"] is False


def test_new_uid_replaces_the_container(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    name, agent = node
    cluster.put(name, "swap.1")
    old = cluster.wait_state("swap.1", "running", agent=agent)
    cluster.delete_record("swap.1")
    record = cluster.put(name, "swap.1")
    new = cluster.wait_state("swap.1", "running", agent=agent, uid=record.uid)
    assert new["container_id"] != old["container_id"]
    assert node_containers(name) == [new["container_id"]]
    assert inspect(new["container_id"])["Config"]["Labels"]["dora.uid"] == record.uid


def test_gpu_request_without_nvidia_runtime_fails_clearly(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    name, agent = node
    cluster.put(name, "train.1", computed={"gpus": [0], "cpus": [0], "millicores": None})
    observed = cluster.wait_state("train.1", "failed", agent=agent)
    assert observed["reason"].startswith("this node has no NVIDIA container runtime: ")
    (cid,) = node_containers(name)
    request = inspect(cid)["HostConfig"]["DeviceRequests"][0]
    assert request["Driver"] == "nvidia"
    assert request["DeviceIDs"] == ["0"]
    assert request["Capabilities"] == [["gpu"]]


def test_pull_policy_never_without_the_image_fails(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    name, agent = node
    cluster.put(name, "nopull.1", image="dora-test/absent:never", pull="Never")
    observed = cluster.wait_state("nopull.1", "failed", agent=agent)
    assert "dora-test/absent:never is not on this node" in observed["reason"]
    assert "pullPolicy is Never" in observed["reason"]
    assert node_containers(name) == []


def test_pull_policy_always_reports_the_pull_error(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    """The image is present under a loopback registry name, but Always pulls, and the
    registry (127.0.0.1:1) refuses: the error text is the reason."""
    name, agent = node
    image = f"127.0.0.1:1/dora-test/always:{SESSION}"
    tag_image(BUSYBOX_IMAGE, image)
    try:
        cluster.put(name, "pull.1", image=image, pull="Always")
        # It retries with backoff (reported "creating", reason = the error), then gives up.
        final = cluster.wait_state("pull.1", "failed", agent=agent, within=30)
        assert final["reason"].startswith(f"gave up after 4 failed starts: pull of {image} failed")
        assert final["container_id"] == ""
        assert node_containers(name) == []
    finally:
        remove_image(image)


def test_if_not_present_uses_the_local_image(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    """IfNotPresent with the image present never contacts the (unreachable) registry."""
    name, agent = node
    image = f"127.0.0.1:1/dora-test/local:{SESSION}"
    tag_image(BUSYBOX_IMAGE, image)
    try:
        cluster.put(name, "local.1", image=image, pull="IfNotPresent")
        cluster.wait_state("local.1", "running", agent=agent)
        cluster.update("local.1", desired="drain")
        cluster.wait_state("local.1", "deleted", agent=agent)
    finally:
        remove_image(image)


def test_resources_ports_env_and_mounts_as_computed(
    cluster: NodeCluster, node: tuple[str, AgentProcess], tmp_path_factory: pytest.TempPathFactory
) -> None:
    name, agent = node
    share = tmp_path_factory.mktemp("local-storage")
    (share / "hello.txt").write_text("from the host\n")
    spec = {
        "config": {
            "cmd": "sh -c 'cat /data/hello.txt; touch /data/new 2>&1; echo K=$K L=$L; sleep 3600'",
            "env": {"K": "value with spaces", "L": "2"},
            "restartPolicy": "Never",
        },
        "network": {
            "mode": "bridge",
            "ports": [
                {
                    "name": "http",
                    "kind": "NodePort",
                    "protocol": "tcp",
                    "port": 8080,
                    "nodePort": 31080,
                },
                {
                    "name": "dns",
                    "kind": "NodePort",
                    "protocol": "udp",
                    "port": 53,
                    "nodePort": 31053,
                },
                {"name": "any", "kind": "NodePort", "protocol": "tcp", "port": 9000},
            ],
        },
    }
    computed = {
        "cpus": [0],
        "millicores": None,
        "memory": 256 * 1024 * 1024,
        "shm_size": 32 * 1024 * 1024,
        "replica": 3,
        "volumes": [
            {
                "name": "shared",
                "workspace": WORKSPACE,
                "target": "/data",
                "read_only": True,
                "storage_kind": "Local",
                "path": str(share),
            }
        ],
    }
    cluster.put(name, "svc.3", spec=spec, computed=computed)
    observed = cluster.wait_state("svc.3", "running", agent=agent)
    data = inspect(observed["container_id"])
    host = data["HostConfig"]
    assert host["CpusetCpus"] == "0"
    assert host["NanoCpus"] == 0
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["ShmSize"] == 32 * 1024 * 1024
    assert host["NetworkMode"] == "bridge"
    bindings = host["PortBindings"]
    assert bindings["8080/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "31082"}]  # 31080 + 3 - 1
    assert bindings["53/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "31055"}]
    assert bindings["9000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": ""}]
    assert host["Binds"] == [f"{share}:/data:ro"]
    env = data["Config"]["Env"]
    assert "K=value with spaces" in env and "L=2" in env
    assert "NVIDIA_VISIBLE_DEVICES=void" in env
    assert "DORA_REPLICA=3" in env
    logs = wait_until(
        lambda: (out := docker("logs", observed["container_id"])) and "K=" in out and out,
        within=10,
        what="logs",
    )
    assert "from the host" in logs
    assert "Read-only file system" in logs
    assert "K=value with spaces L=2" in logs
    assert not (share / "new").exists()


def test_millicores_and_default_shm(cluster: NodeCluster, node: tuple[str, AgentProcess]) -> None:
    name, agent = node
    cluster.put(
        name, "small.1", computed={"cpus": [], "millicores": 250, "memory": 512 * 1024 * 1024}
    )
    observed = cluster.wait_state("small.1", "running", agent=agent)
    host = inspect(observed["container_id"])["HostConfig"]
    assert host["NanoCpus"] == 250_000_000
    assert host["CpusetCpus"] == ""
    assert host["Memory"] == 512 * 1024 * 1024
    assert host["ShmSize"] == 256 * 1024 * 1024  # half the memory limit by default


def test_unrunnable_assignment_is_reported_failed(
    cluster: NodeCluster, node: tuple[str, AgentProcess]
) -> None:
    name, agent = node
    cluster.put(
        name,
        "bad.1",
        computed={
            "volumes": [{"name": "etc", "target": "/x", "storage_kind": "Local", "path": "/etc"}]
        },
    )
    observed = cluster.wait_state("bad.1", "failed", agent=agent)
    assert "system folder" in observed["reason"]
    assert node_containers(name) == []
    cluster.update("bad.1", desired="drain")
    cluster.wait_state("bad.1", "deleted", agent=agent)


def test_long_poll_and_docker_events_act_at_once(cluster: NodeCluster) -> None:
    """With a 30 s heartbeat, only the assignment long-poll can start a container within
    seconds, and only the Docker event stream can report a kill within seconds."""
    name = cluster.add_node("events")
    agent = cluster.agent(name, DORA_REPORT_INTERVAL_S="30")
    cluster.wait_ready(name, agent)
    cluster.put(name, "victim.1")
    observed = cluster.wait_state("victim.1", "running", agent=agent, within=5)
    docker("kill", observed["container_id"])
    cluster.wait_state("victim.1", "exited", agent=agent, exit_code=137, within=5)
    assert node_containers(name) == [observed["container_id"]]  # Never: kept, not restarted
    cluster.update("victim.1", desired="drain")
    cluster.wait_state("victim.1", "deleted", agent=agent, within=5)
    wait_gone(observed["container_id"])
    agent.stop()
