"""`dora apply` and `dora delete` as a subprocess against a real API server: the admin
guide's files, created / unchanged / scaled / updated, folders and stdin, a mixed file
with bad documents, unreadable paths, draining workloads and refused deletes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_fixtures import EXAMPLES, SERVER_ENV, Cli, table_rows
from tests.helpers import ApiProcess, server_fixture

api = server_fixture(name="cli-apply", env=SERVER_ENV)

GUIDE_ORDER = [
    ("zone-and-storage.yaml", ["zone/dora-cluster-1", "storage/dora.storage.01"]),
    ("node-role.yaml", ["role/node-rep", "user/node"]),
    ("nodes.yaml", ["node/node1", "node/node2"]),
    ("user-role.yaml", ["role/user"]),
    ("users.yaml", ["workspace/amedeo.setti", "user/amedeo.setti"]),
    ("volume.yaml", ["volume/home"]),
    ("resourcecredit.yaml", ["resourcecredit/Tesla V100-SXM2-16GB"]),
    ("workload.yaml", ["workload/hello"]),
]
"""Every example file, in the admin guide's order, and what each defines."""


@pytest.fixture(scope="module")
def cli(api: ApiProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    c = Cli(tmp_path_factory.mktemp("cli-apply-home"))
    c.login(api, api.admin_token())
    yield c
    c.assert_no_token_leaks()


@pytest.fixture(scope="module")
def guide(cli: Cli) -> list[str]:
    """Apply the guide's files one command each; the lines they printed."""
    printed = []
    for name, _ in GUIDE_ORDER:
        result = cli.run("apply", "-f", str(EXAMPLES / name))
        assert result.err == "", str(result)
        printed.append(result.out)
    return printed


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_every_guide_file_prints_one_line_per_resource(guide: list[str]) -> None:
    for (name, resources), out in zip(GUIDE_ORDER, guide, strict=True):
        # The zone exists already: the API creates its own zone at the first start.
        expected = [
            f"{r} unchanged" if r == "zone/dora-cluster-1" else f"{r} created" for r in resources
        ]
        assert out.splitlines() == expected, name


def test_applying_the_guide_again_changes_nothing(cli: Cli, guide: list[str]) -> None:
    argv = [arg for name, _ in GUIDE_ORDER for arg in ("-f", str(EXAMPLES / name))]
    again = cli.run("apply", *argv)
    everything = [r for _, resources in GUIDE_ORDER for r in resources]
    assert sorted(again.lines) == sorted(f"{r} unchanged" for r in everything)
    assert again.err == ""


def test_scaled_then_updated_then_unchanged_through_stdin(cli: Cli, guide: list[str]) -> None:
    original = (EXAMPLES / "workload.yaml").read_text()
    assert "count: 2\n" in original and "image: busybox:1.36\n" in original
    scaled = original.replace("count: 2\n", "count: 3\n")
    assert cli.run("apply", "-f", "-", stdin=scaled).lines == ["workload/hello scaled"]
    updated = scaled.replace("image: busybox:1.36\n", "image: busybox:1.37\n")
    assert cli.run("apply", "-f", "-", stdin=updated).lines == ["workload/hello updated"]
    assert cli.run("apply", "-f", "-", stdin=updated).lines == ["workload/hello unchanged"]
    rows = table_rows(cli.run("get", "wk", "hello", "-g", "amedeo.setti").out)
    assert rows[1][5:8] == ["busybox:1.37", "0", "0/3"]
    # no scheduler runs in this module: `why` says so rather than blaming the nodes
    assert cli.run("why", "wk", "hello", "-g", "amedeo.setti").lines == [
        "workload/hello: Pending",
        "no reason recorded: the scheduler has not looked at it yet "
        "(is `dora server scheduler` running for zone dora-cluster-1?)",
    ]


def test_a_folder_applies_in_dependency_order_whatever_the_file_names(
    cli: Cli, guide: list[str], tmp_path: Path
) -> None:
    # Alphabetical order would apply the workload before its volume, the volume
    # before its storage, and all of them before the workspace.
    _write(
        tmp_path / "a-workload.yaml",
        "apiVersion: v1\nkind: Workload\nmetadata: {name: job}\n"
        "spec:\n  image: {image: busybox:1.36}\n  volumes: [{name: data, target: /data}]\n",
    )
    _write(
        tmp_path / "b-volume.yml",
        "apiVersion: v1\nkind: Volume\nmetadata: {name: data, zone: dora-cluster-1}\n"
        "spec: {storage: st-dir}\n",
    )
    _write(
        tmp_path / "c-storage.yaml",
        "apiVersion: v1\nkind: Storage\nmetadata: {name: st-dir, zone: dora-cluster-1}\n"
        "spec: {endpoint: 127.0.0.32, mountpath: /export, kind: NFS}\n",
    )
    _write(
        tmp_path / "d-workspace.yaml",
        "apiVersion: v1\nkind: Workspace\nmetadata: {name: team-dir}\n",
    )
    _write(tmp_path / "notes.txt", "not yaml: ignored\n")
    result = cli.run("apply", "-f", str(tmp_path), "-g", "team-dir")
    assert result.lines == [
        "workspace/team-dir created",
        "storage/st-dir created",
        "volume/data created",
        "workload/job created",
    ]
    listed = table_rows(cli.run("get", "vol", "-g", "team-dir").out)
    assert listed[1][:5] == ["volume", "dora-cluster-1", "team-dir", "data", "st-dir"]


def test_a_mixed_file_reports_each_bad_document_and_applies_the_others(
    cli: Cli, guide: list[str], tmp_path: Path
) -> None:
    path = _write(
        tmp_path / "mixed.yaml",
        """\
apiVersion: v1
kind: Workspace
metadata:
  name: mixed-ok
---
apiVersion: v1
kind: Workload
metadata: {name: bad-count, workspace: mixed-ok}
spec:
  replica: {count: -1}
  image: {image: busybox:1.36}
---
apiVersion: v1
kind: Volume
metadata: {name: bad-storage, workspace: mixed-ok, zone: dora-cluster-1}
spec: {storage: no-such-storage}
---
apiVersion: v1
kind: Workload
metadata: {name: good, workspace: mixed-ok}
spec:
  image: {image: busybox:1.36}
""",
    )
    result = cli.run("apply", "-f", path, expect=1)
    assert result.lines == ["workspace/mixed-ok created", "workload/good created"]
    assert result.err_lines == [
        f"error  {path} doc 2: spec.replica.count: must be an integer between 0 and 10000 (got -1)",
        f"error  {path} doc 3: volume/bad-storage: spec.storage: storage 'no-such-storage' "
        "does not exist in zone 'dora-cluster-1'",
    ]
    names = [row[3] for row in table_rows(cli.run("get", "wk", "-g", "mixed-ok").out)[1:]]
    assert names == ["good"]
    assert cli.run("get", "vol", "-g", "mixed-ok").lines[2:] == []


def test_yaml_syntax_errors_are_reported_with_their_line(cli: Cli, tmp_path: Path) -> None:
    path = _write(tmp_path / "broken.yaml", "apiVersion: v1\nkind: Workspace\nmetadata: {name: x\n")
    result = cli.run("apply", "-f", path, expect=1)
    assert result.out == ""
    assert len(result.err_lines) == 1
    assert result.err.startswith(f"error  {path} doc 1: ")
    assert "invalid YAML at line 4, column 1" in result.err


def test_an_unreadable_path_is_a_usage_error_and_nothing_is_applied(
    cli: Cli, guide: list[str], tmp_path: Path
) -> None:
    good = _write(
        tmp_path / "good.yaml", "apiVersion: v1\nkind: Workspace\nmetadata: {name: never-applied}\n"
    )
    missing = str(tmp_path / "missing.yaml")
    result = cli.run("apply", "-f", good, "-f", missing, expect=2)
    assert result.out == ""
    assert result.err_lines == [f"error: {missing}: no such file or directory"]
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    assert cli.run("apply", "-f", str(empty), expect=2).err_lines == [
        f"error: {empty}: no *.yaml or *.yml files in this directory"
    ]
    workspaces = [row[1] for row in table_rows(cli.run("get", "ws").out)[1:]]
    assert "never-applied" not in workspaces


def test_delete_by_name_drains_workloads(cli: Cli, guide: list[str]) -> None:
    cli.run("apply", "-f", "-", stdin=_job("to-drain", "amedeo.setti"))
    result = cli.run("delete", "wk", "to-drain", "-g", "amedeo.setti")
    assert result.lines == ["workload/to-drain draining"]
    row = table_rows(cli.run("get", "wk", "to-drain", "-g", "amedeo.setti").out)[1]
    assert (row[4], row[-1]) == ("drain", "draining")
    missing = cli.run("delete", "wk", "no-such-job", "-g", "amedeo.setti", expect=1)
    assert missing.out == ""
    assert len(missing.err_lines) == 1
    assert missing.err.startswith("error  workload/no-such-job: ")
    assert "not found" in missing.err


def test_delete_from_a_file_goes_in_reverse_dependency_order(
    cli: Cli, guide: list[str], tmp_path: Path
) -> None:
    path = _write(
        tmp_path / "pair.yaml",
        "apiVersion: v1\nkind: Storage\nmetadata: {name: st-pair, zone: dora-cluster-1}\n"
        "spec: {endpoint: 127.0.0.33, mountpath: /pair, kind: NFS}\n---\n"
        "apiVersion: v1\nkind: Volume\n"
        "metadata: {name: pair, zone: dora-cluster-1, workspace: amedeo.setti}\n"
        "spec: {storage: st-pair}\n",
    )
    assert cli.run("apply", "-f", path).lines == ["storage/st-pair created", "volume/pair created"]
    # The storage is first in the file, but it cannot go while the volume uses it.
    assert cli.run("delete", "-f", path).lines == ["volume/pair deleted", "storage/st-pair deleted"]


def test_a_workspace_with_dependents_is_refused_unless_cascade(cli: Cli, guide: list[str]) -> None:
    cli.run("apply", "-f", "-", stdin="apiVersion: v1\nkind: Workspace\nmetadata: {name: doomed}\n")
    cli.run("apply", "-f", "-", stdin=_job("inside", "doomed"))
    refused = cli.run("delete", "ws", "doomed", expect=1)
    assert refused.out == ""
    assert refused.err_lines == [
        "error  workspace/doomed: workspace doomed still has 1 workload; delete them first, "
        "or delete with cascade (dora delete workspace doomed --cascade)"
    ]
    assert cli.run("delete", "ws", "doomed", "--cascade").lines == ["workspace/doomed deleted"]
    assert "doomed" not in cli.run("get", "ws").out


def test_delete_needs_a_kind_and_name_or_a_file(cli: Cli) -> None:
    assert cli.run("delete", "wk", expect=2).err_lines == [
        "error: name a KIND and NAME, or pass -f FILE"
    ]
    unknown = cli.run("delete", "widget", "x", expect=2)
    assert unknown.err.startswith("error: unknown kind 'widget'")


def _job(name: str, workspace: str) -> str:
    return (
        f"apiVersion: v1\nkind: Workload\nmetadata: {{name: {name}, workspace: {workspace}}}\n"
        "spec:\n  image: {image: busybox:1.36}\n"
    )
