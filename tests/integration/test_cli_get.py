"""`dora get` for every kind against golden tables, and `describe`, `why`, `pause`,
`resume`, as a subprocess against a real API server and a real scheduler process.

The cluster is the admin guide's (zone, storage, node-rep role and node user, node1
for CPU work and node2 for GPU work, the user role, amedeo.setti with a workspace,
volume and credits, a resource credit) plus node3, which never reports. Nodes report
through the API's node route with the node user's token, as agents do; the scheduler
process places the workloads and explains the one that cannot fit; the node reports
then say the placed containers run. The scheduler is stopped before the tables are
read, so nothing moves under them.

Golden tables live in tests/data/golden/get_*.txt; cells that depend on the clock or
on random ids (columns age, lastSeen, uid, revision) are replaced by ``~`` there, see
`tests.cli_fixtures.normalise_table`. ``DORA_UPDATE_GOLDEN=1`` rewrites them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from dora.store import Key, Patch, Store
from tests.cli_fixtures import (
    SERVER_ENV,
    V100,
    Cli,
    SchedulerProcess,
    check_golden,
    node_report,
    normalise_table,
    report_node,
    table_rows,
)
from tests.helpers import (
    ZONE,
    ApiProcess,
    apply,
    apply_many,
    doc,
    make_token,
    seed_documents,
    server_fixture,
    wait_until,
    with_store,
)

api = server_fixture(name="cli-get", env=SERVER_ENV)

WS = "amedeo.setti"
NODE_COLUMNS = [
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
"""The admin guide's `dora get nodes` header, exactly."""


def _workload(name: str, workspace: str = WS, *, gpus: int = 0, cpus: int = 1) -> dict[str, Any]:
    selectors: dict[str, Any] = {"cpu": {"product_name": "All", "count": cpus}}
    if gpus:
        selectors["gpu"] = {"product_name": V100, "count": gpus}
    spec = {
        "replica": {"count": 1},
        "selectors": selectors,
        "image": {"image": "busybox:1.36", "pullPolicy": "IfNotPresent"},
        "config": {"cmd": "sleep 3600"},
    }
    return doc("Workload", name, spec, zone=ZONE, workspace=workspace)


@dataclass
class Cluster:
    api: ApiProcess
    admin: httpx.Client
    node_token: str
    containers: dict[str, dict[str, Any]]
    """Container name → its record (as the API lists it), after placement."""

    def report(self) -> None:
        """Both agents report again (READY for another 20 s), their containers running."""
        running = {
            node: [
                {"workspace": WS, "name": name, "uid": c["uid"], "state": "running"}
                for name, c in self.containers.items()
                if c["node"] == node
            ]
            for node in ("node1", "node2")
        }
        report_node(
            self.api, self.node_token, "node1", node_report(cpus=4, containers=running["node1"])
        )
        report_node(
            self.api,
            self.node_token,
            "node2",
            node_report(cpus=8, gpus=2, containers=running["node2"]),
        )

    def records(self, kind: str, workspace: str = WS) -> dict[str, dict[str, Any]]:
        r = self.admin.get(f"/v1/resources/{kind}", params={"workspace": workspace})
        assert r.status_code == 200, r.text
        return {item["name"]: item for item in r.json()["items"]}


@pytest.fixture(scope="module")
def cluster(api: ApiProcess) -> Iterator[Cluster]:
    with api.client(api.admin_token()) as admin:
        apply_many(admin, seed_documents())
        apply_many(
            admin,
            [
                doc(
                    "Node",
                    "node3",
                    {"endpoint": "https://127.0.0.43:3001", "allow": ["CPUWorkload"]},
                    zone=ZONE,
                ),
                doc("Usercredit", WS, zone=ZONE),
                doc("Workspace", "team-b"),
                _workload("web"),
                _workload("train", gpus=1),
                _workload("pausable", "team-b"),
            ],
        )
        node_token = make_token(admin, "node", "node").token
        c = Cluster(api, admin, node_token, {})
        c.report()
        with SchedulerProcess(api) as scheduler:

            def placed() -> bool:
                c.report()
                found = c.records("Container")
                c.containers = {n: r for n, r in found.items() if r["node"]}
                return set(c.containers) == {"web.1", "train.1"}

            wait_until(placed, within=30, interval=0.2, what=f"placement\n{scheduler.log_text()}")

            def running() -> bool:
                c.report()
                wk = c.records("Workload")
                return all((wk[n]["computed"] or {}).get("running") == 1 for n in ("web", "train"))

            wait_until(running, within=30, interval=0.2, what="running counts")
            # Only now the GPU job that cannot fit, so its reason is computed with
            # train's GPU already booked (max free 1, not 2).
            apply(admin, _workload("big", gpus=16))

            def explained() -> bool:
                c.report()
                big = c.records("Workload").get("big") or {}
                return bool((big.get("computed") or {}).get("reason"))

            wait_until(explained, within=30, interval=0.2, what="a reason for big")
        _set_credits(api)
        yield c


def _set_credits(api: ApiProcess) -> None:
    """What the credit checker writes on a Usercredit (it does not exist yet)."""

    async def write(store: Store) -> None:
        key = Key("Usercredit", ZONE, "", WS)
        record = await store.get(key)
        computed = {"weekly": 12.5, "total": 40.25, "resetDate": "2026-12-07"}
        await store.update(
            key, Patch(computed=computed), expected_version=record.version, actor="creditsys"
        )

    with_store(api, write)


@pytest.fixture(scope="module")
def cli(
    api: ApiProcess, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cli]:
    c = Cli(tmp_path_factory.mktemp("cli-get-home"))
    c.login(api, api.admin_token())
    yield c
    c.assert_no_token_leaks()


@pytest.fixture
def fresh(cluster: Cluster) -> None:
    """Nodes reported a moment ago (READY; CPU rows only list READY nodes)."""
    cluster.report()


GOLDEN = [
    # (what the user types, golden file, extra arguments)
    ("nodes", "get_nodes", ()),
    ("node", "get_nodes", ()),
    ("wk", "get_wk", ("-g", WS)),
    ("workloads", "get_wk", ("-g", WS)),
    ("c", "get_c", ("-g", WS)),
    ("gpu", "get_gpu", ()),
    ("cpu", "get_cpu", ()),
    ("vol", "get_vol", ("-g", WS)),
    ("storage", "get_storage", ()),
    ("rc", "get_rc", ()),
    ("uc", "get_uc", ()),
    ("user", "get_user", ()),
    ("role", "get_role", ()),
    ("ws", "get_ws", ()),
    ("zone", "get_zone", ()),
    ("z", "get_zone", ()),
]


@pytest.mark.parametrize(("typed", "golden", "extra"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_get_matches_the_golden_table(
    cli: Cli, fresh: None, typed: str, golden: str, extra: tuple[str, ...]
) -> None:
    result = cli.run("get", typed, *extra)
    assert result.err == ""
    check_golden(golden, result.out)


def test_get_nodes_has_the_guide_columns_and_readiness(cli: Cli, fresh: None) -> None:
    rows = table_rows(cli.run("get", "nodes").out)
    assert rows[0] == NODE_COLUMNS
    status = {row[2]: row[8] for row in rows[1:]}
    assert status == {"node1": "READY", "node2": "READY", "node3": "NOT_READY"}
    by_name = {row[2]: row for row in rows[1:]}
    assert by_name["node2"][4:7] == [
        "8xIntel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz",
        f"2x{V100}",
        "now",
    ]


def test_wide_adds_owner_revision_and_uid(cli: Cli, fresh: None) -> None:
    result = cli.run("get", "nodes", "-o", "wide")
    check_golden("get_nodes_wide", result.out)
    assert table_rows(result.out)[0][-3:] == ["owner", "revision", "uid"]


def test_json_and_yaml_give_the_records(cli: Cli, cluster: Cluster) -> None:
    listed = json.loads(cli.run("get", "wk", "-g", WS, "-o", "json").out)
    assert sorted(item["name"] for item in listed) == ["big", "train", "web"]
    web = next(item for item in listed if item["name"] == "web")
    assert web["spec"]["image"]["image"] == "busybox:1.36"
    assert web["computed"]["running"] == 1
    one = yaml.safe_load(cli.run("get", "c", "web.1", "-g", WS, "-o", "yaml").out)
    assert isinstance(one, dict)  # one record by name: the record itself
    assert (one["kind"], one["name"], one["node"]) == ("Container", "web.1", "node1")
    bad = cli.run("get", "nodes", "-o", "xml", expect=2)
    assert bad.err_lines == ["error: unknown output 'xml': use wide, json or yaml"]


def test_watch_redraws_until_interrupted(cli: Cli, fresh: None) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dora.cli.main", "get", "zone", "-w"],
        env=cli.base_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = [proc.stdout.readline() for _ in range(3)]
        # (the clear-screen sequence is dropped when stdout is not a terminal)
        assert seen[0].startswith("kind  name")
        assert seen[2].startswith("zone  dora-cluster-1")
    finally:
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err


def test_gpu_and_cpu_by_name_or_by_node(cli: Cli, fresh: None) -> None:
    by_node = table_rows(cli.run("get", "gpu", "node2").out)
    assert [row[2:5] for row in by_node[1:]] == [["node2", V100, "0"], ["node2", V100, "1"]]
    booked = {row[4]: row[8] for row in by_node[1:]}
    assert sorted(booked.values()) == ["no", "yes"]  # train holds one of the two
    one = table_rows(cli.run("get", "gpu", "node2:1").out)
    assert len(one) == 2 and one[1][4] == "1"
    missing = cli.run("get", "cpu", "node9", expect=1)
    assert missing.err_lines == ["error: no CPU named 'node9' (nor a node with one) in your zone"]


def test_workspace_zone_and_all_workspaces(cli: Cli, cluster: Cluster) -> None:
    # The admin's own workspace is empty; -g names another; -A lists every one.
    assert cli.run("get", "wk").lines[2:] == []
    names = {row[3] for row in table_rows(cli.run("get", "wk", "-g", WS).out)[1:]}
    assert names == {"web", "train", "big"}
    everything = table_rows(cli.run("get", "wk", "-A").out)[1:]
    assert {(row[2], row[3]) for row in everything} == {
        (WS, "web"),
        (WS, "train"),
        (WS, "big"),
        ("team-b", "pausable"),
    }
    assert cli.run("get", "storage", "-z", ZONE).lines[2].startswith("storage  dora-cluster-1")
    assert cli.run("get", "storage", "-z", "elsewhere").lines[2:] == []


def test_an_unknown_kind_lists_the_kinds(cli: Cli) -> None:
    result = cli.run("get", "widgets", expect=2)
    assert result.out == ""
    assert result.err_lines == [
        "error: unknown kind 'widgets'; valid kinds: Zone, Workspace, User, Role, Storage, "
        "Node, Resourcecredit, Usercredit, Volume, Workload, Container, CPU, GPU (short "
        "aliases: z, ws, rc, uc, vol, wk, c, cpu, gpu; plurals work too)"
    ]


def test_describe_shows_the_record_and_its_events(cli: Cli, cluster: Cluster) -> None:
    described = yaml.safe_load(cli.run("describe", "wk", "web", "-g", WS).out)
    assert (described["kind"], described["name"], described["workspace"]) == ("Workload", "web", WS)
    assert described["spec"]["image"]["image"] == "busybox:1.36"
    assert described["computed"]["running"] == 1
    assert any("Created" in line for line in described["events"])
    container = json.loads(cli.run("describe", "c", "train.1", "-g", WS, "-o", "json").out)
    assert container["node"] == "node2"
    assert container["observed"]["state"] == "running"
    assert len(container["computed"]["gpus"]) == 1
    missing = cli.run("describe", "wk", "nope", "-g", WS, expect=1)
    assert missing.err_lines == [f"error: Workload {ZONE}/{WS}/nope not found"]


def test_why_gives_the_schedulers_counted_reason(cli: Cli, cluster: Cluster) -> None:
    why = cli.run("why", "wk", "big", "-g", WS)
    assert why.lines[0] == "workload/big: Pending"
    assert why.lines[1].startswith("reason: 0/3 nodes fit: ")
    reason = why.lines[1].removeprefix("reason: 0/3 nodes fit: ")
    # one count per reason, adding up to the three nodes
    counts = [int(n) for n in re.findall(r"(?:^|, )(\d+) ", reason)]
    assert counts == [1, 1, 1], reason
    assert reason.startswith("1 NOT_READY, ")
    assert reason.endswith(f'1 no free "{V100}" (need 16, max free 1)')
    # The container waiting for a place is explained by its workload's reason.
    container = cli.run("why", "c", "big.1", "-g", WS)
    assert container.lines == ["container/big.1: pending", why.lines[1]]
    running = cli.run("why", "wk", "web", "-g", WS)
    assert running.lines == [
        "workload/web: Running",
        "no reason recorded: it is not waiting on the scheduler",
    ]


def test_pause_and_resume(cli: Cli, cluster: Cluster) -> None:
    assert cli.run("pause", "wk", "pausable", "-g", "team-b").lines == ["workload/pausable paused"]
    row = table_rows(cli.run("get", "wk", "pausable", "-g", "team-b").out)[1]
    assert (row[4], row[-1]) == ("pause", "paused")
    assert cli.run("resume", "wk", "pausable", "-g", "team-b").lines == [
        "workload/pausable resumed"
    ]
    row = table_rows(cli.run("get", "wk", "pausable", "-g", "team-b").out)[1]
    assert row[4] == "run"
    wrong = cli.run("pause", "vol", "home", "-g", WS, expect=2)
    assert wrong.err_lines == [
        "error: only workloads (`wk`) and containers (`c`) can be paused and resumed"
    ]


def test_normalise_keeps_widths_and_only_touches_variable_columns() -> None:
    text = (
        "kind  name  lastSeen  status  age\n"
        "---------------------------------\n"
        "node  n1    now       READY   12s\n"
        "node  n2    -         READY   3d\n"
    )
    assert normalise_table(text) == (
        "kind  name  lastSeen  status  age\n"
        "---------------------------------\n"
        "node  n1    ~         READY   ~\n"
        "node  n2    -         READY   ~\n"
    )
