"""Fixtures for the shell/logs tests: the node tests' API + agent cluster
(`tests.integration.node_fixtures`), plus an agent whose exec server listens on a
free 127.0.0.1 port that its Node record names, users with and without the
``Container: Shell``/``Log`` verbs, and the `dora` CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from dora.client import Client
from tests.docker_images import ensure_busybox_image
from tests.helpers import (
    ZONE,
    ApiProcess,
    apply_many,
    doc,
    free_port,
    grant,
    make_token,
    remember,
    role_doc,
    unique,
    user_doc,
    wait_until,
)
from tests.integration.node_fixtures import (
    READY_S,
    WORKSPACE,
    AgentProcess,
    NodeCluster,
    cleanup_docker,
    setup_cluster,
    teardown_cluster,
)

OTHER_WORKSPACE = "exec-other"
TICKER = (
    "echo first; echo second; echo oops >&2; "
    "while true; do if [ -f /tmp/go ]; then echo new-line; rm /tmp/go; fi; sleep 0.1; done"
)
"""A container that logs three lines, then one more each time /tmp/go appears."""


@dataclass
class ExecNode:
    name: str
    agent: AgentProcess
    port: int


@dataclass
class ExecEnv:
    cluster: NodeCluster
    node: ExecNode
    tokens: dict[str, str]
    """user → token: admin, dev (Shell+Log here), viewer (no Shell/Log), other
    (Shell+Log in another workspace only)."""
    config_dir: Path
    containers: list[str] = field(default_factory=list)

    @property
    def api(self) -> ApiProcess:
        return self.cluster.api

    def client(self, user: str = "dev") -> Client:
        return Client(self.api.url, self.tokens[user])

    def http(self, user: str = "dev") -> httpx.Client:
        return self.api.client(self.tokens[user])

    def run_container(self, cmd: Any = "sleep 3600", *, wait: str = "running") -> str:
        """A container assigned to the exec node, waited for until it is in `wait`."""
        name = f"{unique('sh')}.1"
        self.cluster.put(self.node.name, name, cmd=cmd)
        self.containers.append(name)
        self.cluster.wait_state(name, wait, agent=self.node.agent)
        return name

    def cli_env(self, user: str = "dev") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DORA_")}
        env.update(
            DORA_API_SERVER=self.api.url,
            DORA_TOKEN=self.tokens[user],
            DORA_CONFIG=str(self.config_dir / "config"),
            PYTHONUNBUFFERED="1",
        )
        return env

    def dora(
        self,
        *args: str,
        user: str = "dev",
        input: bytes | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        """`dora ARGS…` as a subprocess (workspace and zone of the tests)."""
        return subprocess.run(
            dora_argv(*args),
            env=self.cli_env(user),
            input=input if input is not None else b"",
            capture_output=True,
            timeout=timeout,
            check=False,
        )


def dora_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "dora.cli.main", *args]


def scoped(*args: str) -> tuple[str, ...]:
    """`args` with -g/-z of the test workspace, before any `--`."""
    if "--" in args:
        at = args.index("--")
        return (*args[:at], "-g", WORKSPACE, "-z", ZONE, *args[at:])
    return (*args, "-g", WORKSPACE, "-z", ZONE)


def add_exec_node(cluster: NodeCluster, prefix: str = "exec") -> ExecNode:
    """A Node whose endpoint is a free local port, its agent serving exec there, READY,
    and its certificate's fingerprint known to the API."""
    name = unique(prefix)
    port = free_port()
    spec = {"endpoint": f"https://127.0.0.1:{port}", "allow": ["CPUWorkload", "GPUWorkload"]}
    apply_many(cluster.admin, [doc("Node", name, spec, zone=ZONE)])
    cluster.nodes.append(name)
    agent = cluster.agent(name, PORT=str(port), DORA_EXEC_BIND="127.0.0.1")
    cluster.wait_ready(name, agent)
    wait_until(
        lambda: node_fingerprint(cluster, name) and "exec_server_listening" in agent.log_text(),
        within=20,
        what=f"node {name}'s exec server",
    )
    return ExecNode(name, agent, port)


def node_fingerprint(cluster: NodeCluster, node: str) -> str:
    r = cluster.admin.get(f"/v1/resources/node/{node}", params={"zone": ZONE})
    assert r.status_code == 200, r.text
    return str((r.json().get("observed") or {}).get("endpoint_fingerprint") or "")


def make_users(cluster: NodeCluster) -> dict[str, str]:
    admin = cluster.admin
    shell_verbs = {"Container": ["Get", "Describe", "Log", "Shell"]}
    apply_many(
        admin,
        [
            doc("Workspace", OTHER_WORKSPACE),
            role_doc("exec-dev", shell_verbs),
            role_doc("exec-viewer", {"Container": ["Get", "Describe"]}),
            user_doc("exec-dev", [grant("Container", "exec-dev", workspace=WORKSPACE)]),
            user_doc("exec-viewer", [grant("Container", "exec-viewer", workspace=WORKSPACE)]),
            user_doc("exec-other", [grant("Container", "exec-dev", workspace=OTHER_WORKSPACE)]),
        ],
    )
    tokens = {"admin": remember(cluster.api.admin_token())}
    for user, workspace in (
        ("dev", WORKSPACE),
        ("viewer", WORKSPACE),
        ("other", OTHER_WORKSPACE),
    ):
        tokens[user] = remember(make_token(admin, f"exec-{user}", workspace).token)
    return tokens


def exec_env_fixture(api_env: dict[str, str] | None = None) -> Any:
    """A module-scoped `ExecEnv` on a fresh API server and database (`api_env`: more
    environment for the API server)."""

    @pytest.fixture(scope="module")
    def _env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecEnv]:
        ensure_busybox_image()
        data_dir = tmp_path_factory.mktemp("exec-api")
        server_env = {"DORA_NODE_READY_S": str(READY_S), **(api_env or {})}
        with ApiProcess(data_dir, env=server_env) as api:
            api.wait_ready()
            cluster = setup_cluster(api, data_dir)
            try:
                node = add_exec_node(cluster)
                env = ExecEnv(cluster, node, make_users(cluster), data_dir)
                yield env
            finally:
                teardown_cluster(cluster)
                cleanup_docker()

    return _env


def read_until(
    fd: int, needle: bytes, *, within: float = 20, seen: bytearray | None = None
) -> bytes:
    """Read a pty master until `needle` appears; everything read."""
    import select
    import time

    buffer = seen if seen is not None else bytearray()
    deadline = time.monotonic() + within
    while needle not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {needle!r}; got {bytes(buffer)!r}")
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {needle!r}; got {bytes(buffer)!r}")
            buffer.extend(chunk)
    return bytes(buffer)


def lines(data: bytes) -> Sequence[str]:
    return data.decode("utf-8", "replace").splitlines()
