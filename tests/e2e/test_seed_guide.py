"""The admin guide (shared/seed/run-a-cluster.md), step by step, as separate processes
on this machine, with the guide's own YAML and CLI commands.

Differences from the guide, all forced by running it on one machine:

- the guide's private network addresses are loopback ones (API replicas 127.0.0.22
  and .23, NAS 127.0.0.31, nodes 127.0.0.41 and .42); ports are free ones, not 3000;
- no ScyllaDB: without ``CONTACT_POINTS`` both API replicas and the scheduler share
  one SQLite file (same ``DORA_DATA_DIR`` and ``DB_NAME``);
- no load balancer: the admin's profile talks to replica 1, the user's to replica 2,
  node1's agent to replica 1, node2's to replica 2;
- both agents share this machine's Docker engine;
- node2 allows CPUWorkload too (the guide's allows only GPUWorkload, and this machine
  has no GPU), so the Distribute step has two nodes to spread over;
- the user's workload mounts no volume (no NFS server exists here) and runs a busybox
  image built locally (no registry is reachable).
- each agent serves exec and logs on its Node's endpoint address (127.0.0.41:3001 and
  127.0.0.42:3001), so `dora shell` and `dora logs` go API → the right node over TLS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from dora.images import ensure_busybox_image
from tests.e2e.cluster import (
    SESSION,
    ZONE,
    Cluster,
    admin_token_from_log,
    cluster_context,
    running,
    session_containers,
    table,
    wait_for,
)

IMAGE = "dora-e2e/busybox:1"
pytestmark = pytest.mark.slow
USER = "amedeo.setti"

ZONE_AND_STORAGE = """\
---
apiVersion: v1
kind: Zone
metadata:
  name: dora-cluster-1

---
apiVersion: v1
kind: Storage
metadata:
  zone: dora-cluster-1
  name: dora.storage.01
spec:
  endpoint: 127.0.0.31
  mountpath: /dorastorage
  kind: NFS
"""

NODE_ROLE = """\
---
apiVersion: v1
kind: Role
metadata:
  name: node-rep
spec:
  permission:
    Node:
      - report

---
apiVersion: v1
kind: User
metadata:
  name: node
spec:
  resources:
    - kind: Node
      zone: All
      workspace: All
      role: node-rep
"""

NODES = """\
---
apiVersion: v1
kind: Node
metadata:
  zone: dora-cluster-1
  name: node1
spec:
  endpoint: https://127.0.0.41:3001
  allow:
    - CPUWorkload

---
apiVersion: v1
kind: Node
metadata:
  zone: dora-cluster-1
  name: node2
spec:
  endpoint: https://127.0.0.42:3001
  # The guide allows only GPUWorkload here; this machine has no GPU, so node2 takes
  # CPU workloads too, and the Distribute step below has two nodes to spread over.
  allow:
    - CPUWorkload
    - GPUWorkload

# And so long
"""

USER_ROLE = """\
---
apiVersion: v1
kind: Role
metadata:
  name: user
spec:
  permission:
    Workload:
      - Apply
      - Delete
      - Get
      - Describe
      - Pause
      - Resume
      - Event
      - Version
    Container:
      - Apply
      - Delete
      - Get
      - Describe
      - Pause
      - Resume
      - Shell
      - Token
      - Log
      - Event
    Volume:
      - Get
      - Describe
      - Use
      - Upload
      - Download
      - Ls
      - Sync
    Project:
      - Apply
      - Delete
      - Get
      - Describe
    Storage:
      - Get
      - Describe
    CPU:
      - Get
    GPU:
      - Get
    Resourcecredit:
      - Get
      - Describe
    Usercredit:
      - GetOne
      - Describe
    Workspace:
      - Clone
    User:
      - Credits
"""

USERS = """\
---
apiVersion: v1
kind: Workspace
metadata:
  name: amedeo.setti

---
apiVersion: v1
kind: User
metadata:
  name: amedeo.setti
spec:
  default:
    workspace: amedeo.setti
    zone: dora-cluster-1
  resources:
    - kind: All
      zone: dora-cluster-1
      workspace: amedeo.setti
      role: user
  credits:
    - zone: dora-cluster-1
      weekly: 500
"""

VOLUME = """\
---
apiVersion: v1
kind: Volume
metadata:
  zone: dora-cluster-1
  group: amedeo.setti
  name: home
spec:
  storage: dora.storage.01
"""

WORKLOAD = f"""\
---
apiVersion: v1
kind: Workload
metadata:
  name: hello
spec:
  replica:
    count: 2
  selectors:
    cpu:
      product_name: All
      count: 100m
  image:
    image: {IMAGE}
    pullPolicy: IfNotPresent
  config:
    cmd: ["sh", "-c", "echo hello from $(hostname); sleep 3600"]
    affinity: Distribute
    restartPolicy: Always
"""

GUIDE_NODE_COLUMNS = [
    "kind",
    "zone",
    "name",
    "endpoint",
    "cpu",
    "gpu",
    "lastSeen",
    "desired",
    "status",
    "version",
]
"""The header of the guide's ``dora get nodes`` output."""

AGENT_ENV = {"DORA_REPORT_INTERVAL_S": "1"}


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    ensure_busybox_image(IMAGE)
    with cluster_context("dora-e2e-seed-") as c:
        yield c


def nodes_ready(cluster: Cluster) -> list[list[str]] | None:
    header, rows = table(cluster.dora("get", "nodes").stdout)
    assert header == GUIDE_NODE_COLUMNS
    status = header.index("status")
    ready = sorted(row for row in rows if row[status] == "READY")
    return ready if len(ready) == 2 else None


def test_the_admin_guide_end_to_end(cluster: Cluster) -> None:
    # -- API server: replica 1 initialises the database and prints the admin token once
    api1 = cluster.api("api-1", "127.0.0.22", init_db=True).start().wait_ready()
    token = wait_for(
        lambda: "admin token" in api1.log_text().lower() and admin_token_from_log(api1.log_path),
        within=10,
        what="the admin token in api-1's log",
        context=api1.tail,
    )
    # -- replica 2 on the same database, without INIT_DB
    api2 = cluster.api("api-2", "127.0.0.23", init_db=False).start().wait_ready()
    assert "admin token" not in api2.log_text().lower()

    # -- Install the admin CLI
    out = cluster.dora("profile", "init", "admin", "--api-server", api1.url, "--token", token)
    assert "profile admin saved" in out.stdout
    # The same token works on replica 2 (one database, one secret).
    zones = cluster.dora("get", "zone", env={"DORA_API_SERVER": api2.url}).stdout
    assert ZONE in zones

    # -- Scheduler
    scheduler = cluster.scheduler("scheduler-1").start()
    wait_for(
        lambda: "event=leader" in scheduler.log_text(),
        within=20,
        what="the scheduler to lead the zone",
        context=scheduler.tail,
    )

    # -- Storage
    out = cluster.dora(
        "apply", "-f", str(cluster.write_yaml("zoneAndStorage.yaml", ZONE_AND_STORAGE))
    )
    assert "storage/dora.storage.01" in out.stdout, out.stdout

    # -- Nodes: the node-rep role and the node user, their token, the Node records
    out = cluster.dora("apply", "-f", str(cluster.write_yaml("nodeRole.yaml", NODE_ROLE)))
    assert "role/node-rep" in out.stdout and "user/node" in out.stdout, out.stdout
    node_token = cluster.dora("token", "create", "node", "node", "1").stdout.strip()
    assert node_token.count(".") == 2, "a JWT"
    out = cluster.dora("apply", "-f", str(cluster.write_yaml("nodes.yaml", NODES)))
    assert "node/node1" in out.stdout and "node/node2" in out.stdout, out.stdout

    # -- the dora.node service on every node (both here, sharing the Docker engine)
    agents = [
        # Each agent serves exec/logs on its node's endpoint (127.0.0.41:3001 / .42:3001).
        cluster.agent(
            "agent-node1",
            api1,
            "node1",
            node_token,
            PORT="3001",
            DORA_EXEC_BIND="127.0.0.41",
            **AGENT_ENV,
        ).start(),
        cluster.agent(
            "agent-node2",
            api2,
            "node2",
            node_token,
            PORT="3001",
            DORA_EXEC_BIND="127.0.0.42",
            **AGENT_ENV,
        ).start(),
    ]
    ready = wait_for(
        lambda: nodes_ready(cluster), within=30, what="node1 and node2 READY", context=cluster.tails
    )
    assert [row[2] for row in ready] == ["node1", "node2"]
    assert [row[3] for row in ready] == ["https://127.0.0.41:3001", "https://127.0.0.42:3001"]
    for row in ready:
        assert row[1] == ZONE and row[6] == "now" and row[7] == "run", row

    # -- Create users: the user role, a workspace and user with weekly credits, a volume
    out = cluster.dora("apply", "-f", str(cluster.write_yaml("userRole.yaml", USER_ROLE)))
    assert "role/user" in out.stdout, out.stdout
    out = cluster.dora("apply", "-f", str(cluster.write_yaml("users.yaml", USERS)))
    assert f"workspace/{USER}" in out.stdout and f"user/{USER}" in out.stdout, out.stdout
    out = cluster.dora("apply", "-f", str(cluster.write_yaml("volume.yaml", VOLUME)))
    assert "volume/home" in out.stdout, out.stdout
    user = cluster.dora_json("get", "user", USER)[0]
    assert user["spec"]["credits"] == [{"zone": ZONE, "weekly": 500}]

    user_token = cluster.dora("token", "create", USER, USER, "1").stdout.strip()
    assert user_token.count(".") == 2, "a JWT"
    assert user_token != node_token != token

    # -- The user's first workload, through replica 2, with the user's own profile
    cluster.dora("profile", "init", USER, "--api-server", api2.url, "--token", user_token)
    as_user = {"DORA_PROFILE": USER}
    volumes = cluster.dora("get", "vol", env=as_user).stdout
    assert "home" in volumes and "dora.storage.01" in volumes, volumes
    workload = cluster.write_yaml("workload.yaml", WORKLOAD)
    out = cluster.dora("apply", "-f", str(workload), env=as_user)
    assert "workload/hello" in out.stdout, out.stdout

    def both_running() -> list[dict[str, object]] | None:
        rows = cluster.dora_json("get", "c", env=as_user)
        mine = [r for r in rows if r.get("parent") == "hello" or r["name"].startswith("hello.")]
        states = [(r.get("observed") or {}).get("state") for r in mine]
        return mine if len(mine) == 2 and states == ["running", "running"] else None

    containers = wait_for(
        both_running, within=40, what="hello.1 and hello.2 running", context=cluster.tails
    )
    assert sorted(c["node"] for c in containers) == ["node1", "node2"], "Distribute: one per node"
    table_text = cluster.dora("get", "c", env=as_user).stdout
    header, rows = table(table_text)
    cells = sorted((r[header.index("name")], r[header.index("node")]) for r in rows)
    assert [name for name, _ in cells] == ["hello.1", "hello.2"], table_text
    assert sorted(node for _, node in cells) == ["node1", "node2"], table_text

    labels = (f"dora.workspace={USER}", "dora.workload=hello")
    live = running(*labels)
    assert sorted(c.node for c in live) == ["node1", "node2"], live
    assert sorted(c.name for c in live) == ["hello.1", "hello.2"], live
    by_name = {c["name"]: c for c in containers}
    for c in live:
        assert c.uid == by_name[c.name]["uid"], "the Docker container is the record's"
        assert c.node == by_name[c.name]["node"]

    def workload_row() -> list[str] | None:
        header, rows = table(cluster.dora("get", "wk", env=as_user).stdout)
        row = dict(zip(header, rows[0], strict=True)) if len(rows) == 1 else {}
        return rows[0] if row.get("replica") == "2/2" and row.get("state") == "Running" else None

    wait_for(workload_row, within=20, what="`dora get wk`: hello 2/2 Running")

    # -- `dora shell c <name>.1 <cmd>` and `dora logs`, through the API to each node
    for name in ("hello.1", "hello.2"):
        wait_for(
            lambda name=name: (
                "hello from" in cluster.dora("logs", "c", name, env=as_user, check=False).stdout
            ),
            within=30,
            what=f"dora logs c {name}",
            context=cluster.tails,
        )
    out = cluster.dora("shell", "c", "hello.1", "--", "echo", "shell-ok", env=as_user)
    assert out.stdout.strip() == "shell-ok", out.stdout + out.stderr
    code = cluster.dora("shell", "c", "hello.2", "--", "sh", "-c", "exit 3", env=as_user,
                        check=False)  # fmt: skip
    assert code.returncode == 3, code.stdout + code.stderr

    # The admin sees them too, across workspaces.
    admin_view = json.dumps(cluster.dora_json("get", "c", "-A"))
    assert "hello.1" in admin_view and "hello.2" in admin_view

    # -- Deleting the workload removes its containers
    out = cluster.dora("delete", "wk", "hello", env=as_user)
    assert "workload/hello" in out.stdout, out.stdout
    wait_for(
        lambda: not session_containers(*labels),
        within=30,
        what="hello's Docker containers removed",
        context=cluster.tails,
    )
    wait_for(
        lambda: (
            not cluster.dora_json("get", "c", env=as_user)
            and "hello" not in cluster.dora("get", "wk", env=as_user).stdout
        ),
        within=20,
        what="the workload and its containers gone from the API",
        context=cluster.tails,
    )
    for service in (api1, api2, scheduler, *agents):
        assert service.alive(), service.tail()
    assert session_containers() == [], f"session {SESSION} left containers"
