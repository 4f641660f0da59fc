"""Fixtures for the node agent's integration tests: a real API server process with its
SQLite store, real ``dora server node`` processes, and the real Docker engine.

Container records are written straight into the API's store, as the scheduler would
(``computed.node`` set). Every container and volume the agents create carries the
label ``dora-test.session=<id>`` (through ``DORA_EXTRA_LABELS``); teardown removes
exactly those, by id. Every agent gets its own node name, so agents sharing the engine
never see each other's containers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from dora.store import Conflict, Key, NewRecord, Patch, Record, Store
from tests.docker_images import BUSYBOX_IMAGE, ensure_busybox_image
from tests.helpers import (
    NODE_USER,
    ZONE,
    ApiProcess,
    apply_many,
    doc,
    make_token,
    remember,
    unique,
    wait_until,
    with_store,
)

SESSION = uuid.uuid4().hex[:12]
TEST_LABEL = "dora-test.session"
WORKSPACE = "nodetest"
READY_S = 3.0
"""The API's readiness window in these tests (DORA_NODE_READY_S)."""

AGENT_ENV = {
    "DORA_REPORT_INTERVAL_S": "0.5",
    "DORA_RESTART_BACKOFF_S": "0.1",
    "DORA_RESTART_BACKOFF_MAX_S": "1",
    "DORA_FAST_FAILURE_S": "3",
    "DORA_CRASH_LOOP_LIMIT": "4",
    "DORA_STOP_GRACE_S": "2",
    "DORA_API_BACKOFF_MAX_S": "1",
    "DORA_PORT_BIND_IP": "127.0.0.1",
    "DORA_EXTRA_LABELS": f"{TEST_LABEL}={SESSION}",
}


# ------------------------------------------------------------------------------ docker


def docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=60
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def containers(*labels: str, all_: bool = True) -> list[str]:
    """Ids of containers carrying every ``key=value`` label."""
    args = ["ps", "-q", "--no-trunc"] + (["-a"] if all_ else [])
    for label in labels:
        args += ["--filter", f"label={label}"]
    return [line for line in docker(*args).split() if line]


def inspect(container_id: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker("inspect", container_id))
    return data[0]


def node_containers(node: str) -> list[str]:
    return containers(f"dora.node={node}", f"{TEST_LABEL}={SESSION}")


def cleanup_docker() -> None:
    """Remove what this session's agents and tests created (by id, never by name)."""
    ids = containers(f"{TEST_LABEL}={SESSION}")
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    volumes = docker("volume", "ls", "-q", "--filter", f"label={TEST_LABEL}={SESSION}").split()
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)


def foreign_container(*labels: str, name: str | None = None) -> str:
    """A long-running container the agents must not touch (test-labelled for cleanup)."""
    args = ["run", "-d", "--network", "none", "--label", f"{TEST_LABEL}={SESSION}"]
    for label in labels:
        args += ["--label", label]
    if name:
        args += ["--name", name]
    return docker(*args, BUSYBOX_IMAGE, "sleep", "3600").strip()


# ------------------------------------------------------------------------------ agents


class AgentProcess:
    """One ``dora server node`` process; its log in a file; stopped by pid."""

    def __init__(
        self,
        api: ApiProcess,
        node: str,
        token: str,
        log_dir: Path,
        *,
        log_level: str = "DEBUG",
        **env: str,
    ) -> None:
        self.node = node
        self.log_level = log_level
        self.log_path = log_dir / f"agent-{node}-{uuid.uuid4().hex[:6]}.log"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ZONE", "PORT", "API_ENDPOINT", "API_TOKEN", "NODE_NAME")
        }
        self.env.update(AGENT_ENV)
        self.env.update(API_ENDPOINT=api.url, NODE_NAME=node, API_TOKEN=token, PYTHONUNBUFFERED="1")
        self.env.update(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> AgentProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dora.cli.main",
                "server",
                "node",
                "--log-level",
                self.log_level,
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# ------------------------------------------------------------------------------ cluster


@dataclass
class NodeCluster:
    """A running API, its admin client, a node token, and helpers to drive agents."""

    api: ApiProcess
    admin: httpx.Client
    node_token: str
    log_dir: Path
    agents: list[AgentProcess] = field(default_factory=list)
    all_agents: list[AgentProcess] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)

    # -- nodes and agents ------------------------------------------------------------
    def add_node(self, prefix: str = "n") -> str:
        name = unique(prefix)
        spec = {"endpoint": "https://127.0.0.41:3001", "allow": ["CPUWorkload", "GPUWorkload"]}
        apply_many(self.admin, [doc("Node", name, spec, zone=ZONE)])
        self.nodes.append(name)
        return name

    def agent(self, node: str, *, log_level: str = "DEBUG", **env: str) -> AgentProcess:
        agent = AgentProcess(
            self.api, node, self.node_token, self.log_dir, log_level=log_level, **env
        ).start()
        self.agents.append(agent)
        self.all_agents.append(agent)
        return agent

    def node_status(self, node: str) -> str:
        r = self.admin.get(f"/v1/resources/node/{node}", params={"zone": ZONE})
        assert r.status_code == 200, r.text
        return str(r.json().get("status") or "")

    def wait_ready(self, node: str, agent: AgentProcess | None = None) -> None:
        def ready() -> bool:
            if agent is not None and not agent.alive():
                raise AssertionError(f"agent exited:\n{agent.log_text()[-3000:]}")
            return self.node_status(node).startswith("READY")

        wait_until(ready, within=20, what=f"node {node} READY")

    # -- container records -----------------------------------------------------------
    def put(
        self,
        node: str,
        name: str,
        *,
        cmd: Any = "sleep 3600",
        restart: str = "Never",
        image: str = BUSYBOX_IMAGE,
        pull: str = "IfNotPresent",
        computed: Mapping[str, Any] | None = None,
        spec: Mapping[str, Any] | None = None,
        desired: str = "run",
    ) -> Record:
        """Write a Container record assigned to `node`, as the scheduler would."""
        body: dict[str, Any] = {
            "replica": {"count": 1},
            "driver": "Docker",
            "priority": 0,
            "selectors": {"cpu": {"product_name": "All", "count": "100m"}},
            "image": {"image": image, "pullPolicy": pull},
            "config": {"cmd": cmd, "restartPolicy": restart},
            "volumes": [],
            "network": {"mode": "none", "ports": []},
        }
        body.update(spec or {})
        comp: dict[str, Any] = {"node": node, "gpus": [], "cpus": [], "millicores": 100}
        comp.update(computed or {})
        key = Key("Container", ZONE, WORKSPACE, name)
        new = NewRecord(
            key=key,
            spec=body,
            owner="scheduler",
            desired=desired,  # type: ignore[arg-type]
            computed=comp,
            node=node,
            parent=name.rsplit(".", 1)[0],
        )

        async def create(store: Store) -> Record:
            return await store.create(new, actor="scheduler")

        return with_store(self.api, create)

    def update(self, name: str, **patch: Any) -> Record:
        key = Key("Container", ZONE, WORKSPACE, name)

        async def write(store: Store) -> Record:
            for _ in range(50):
                record = await store.get(key)
                try:
                    return await store.update(
                        key, Patch(**patch), expected_version=record.version, actor="scheduler"
                    )
                except Conflict:
                    continue
            raise AssertionError(f"could not update {key}")

        return with_store(self.api, write)

    def delete_record(self, name: str) -> None:
        key = Key("Container", ZONE, WORKSPACE, name)

        async def delete(store: Store) -> None:
            record = await store.get(key)
            await store.delete(key, expected_version=record.version, actor="scheduler")

        with contextlib.suppress(Exception):
            with_store(self.api, delete)

    def observed(self, name: str) -> dict[str, Any]:
        r = self.admin.get(
            f"/v1/resources/container/{name}", params={"zone": ZONE, "workspace": WORKSPACE}
        )
        assert r.status_code == 200, r.text
        observed: dict[str, Any] = r.json().get("observed") or {}
        return observed

    def wait_state(
        self,
        name: str,
        state: str,
        *,
        agent: AgentProcess | None = None,
        within: float = 20,
        **fields: Any,
    ) -> dict[str, Any]:
        """Wait until the container's observed state (as the API stores it) is `state`
        with the given fields; the observed dict."""

        def check() -> dict[str, Any] | None:
            if agent is not None and not agent.alive():
                raise AssertionError(f"agent exited:\n{agent.log_text()[-3000:]}")
            obs = self.observed(name)
            if obs.get("state") == state and all(obs.get(k) == v for k, v in fields.items()):
                return obs
            return None

        try:
            return wait_until(check, within=within, interval=0.1, what=f"{name} {state} {fields}")
        except AssertionError:
            last = self.observed(name)
            logs = agent.log_text()[-4000:] if agent else ""
            raise AssertionError(f"{name}: wanted {state} {fields}, last {last}\n{logs}") from None


def setup_cluster(api: ApiProcess, log_dir: Path, admin: httpx.Client | None = None) -> NodeCluster:
    """The admin guide's node role and user, a workspace, and a node token."""
    admin = admin or api.client(api.admin_token())
    grant = {"kind": "Node", "zone": "All", "workspace": "All", "role": "node-rep"}
    apply_many(
        admin,
        [
            doc("Role", "node-rep", {"permission": {"Node": ["report"]}}),
            doc("User", NODE_USER, {"resources": [grant]}),
            doc("Workspace", WORKSPACE),
        ],
    )
    token = remember(make_token(admin, NODE_USER, WORKSPACE).token)
    return NodeCluster(api=api, admin=admin, node_token=token, log_dir=log_dir)


def teardown_cluster(cluster: NodeCluster) -> None:
    stop_agents(cluster)
    cluster.admin.close()
    # An API still holding a long-poll waits for it on SIGTERM; the agents are gone.
    cluster.api.stop(timeout=2)
    for node in cluster.nodes:
        ids = node_containers(node)
        if ids:
            docker("rm", "-f", "-v", *ids, check=False)
    for agent in cluster.all_agents:
        assert cluster.node_token not in agent.log_text(), "an agent logged its API token"


def cluster_fixture() -> Any:
    """A module-scoped `NodeCluster` on a fresh API server and database."""

    @pytest.fixture(scope="module")
    def _cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
        ensure_busybox_image()
        data_dir = tmp_path_factory.mktemp("node-api")
        with ApiProcess(data_dir, env={"DORA_NODE_READY_S": str(READY_S)}) as api:
            api.wait_ready()
            cluster = setup_cluster(api, data_dir)
            try:
                yield cluster
            finally:
                teardown_cluster(cluster)
                cleanup_docker()

    return _cluster


def stop_agents(cluster: NodeCluster) -> None:
    """Stop every agent of the cluster (each by its pid)."""
    for agent in cluster.agents:
        agent.stop()
    cluster.agents.clear()


def wait_gone(container_id: str, within: float = 15) -> None:
    wait_until(
        lambda: not containers_with_id(container_id), within=within, what=f"{container_id} removed"
    )


def containers_with_id(container_id: str) -> list[str]:
    return [c for c in docker("ps", "-aq", "--no-trunc").split() if c == container_id]
