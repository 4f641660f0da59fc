"""The other kinds' specs, the envelope rules and the Resource object itself."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dora.model import (
    DocumentError,
    Issue,
    NodeSpec,
    Resource,
    ResourcecreditSpec,
    RoleSpec,
    StorageSpec,
    UserSpec,
    VolumeSpec,
    WorkloadSpec,
    WorkspaceSpec,
    ZoneSpec,
    check_objects,
    load_objects,
    parse_document,
)


def doc(kind: str, name: str, spec: Any = None, **metadata: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, **metadata}}
    if spec is not None:
        out["spec"] = spec
    return out


def issues(obj: Any) -> list[str]:
    with pytest.raises(DocumentError) as exc:
        parse_document(obj)
    return [f"{i.path}: {i.message}" for i in exc.value.issues]


# --- Role and User ------------------------------------------------------------------


def test_role_verbs_are_kept_as_written_and_compared_ignoring_case() -> None:
    role = parse_document(
        doc(
            "Role",
            "mix",
            {
                "permission": {
                    "Node": ["report"],
                    "Workload": ["Get", "GETONE"],
                    "All": ["Describe"],
                }
            },
        )
    ).spec_as(RoleSpec)
    assert role.permission["Workload"] == ["Get", "GETONE"]
    assert role.normalized()["Workload"] == frozenset({"get", "getone"})
    assert role.allows("Node", "Report")
    assert role.allows("Workload", "getOne")
    assert role.allows("Volume", "describe")  # granted on All
    assert not role.allows("Volume", "Delete")
    assert not role.allows("node", "report")  # kinds are case-sensitive


def test_role_accepts_every_pseudo_kind_and_reports_each_bad_verb() -> None:
    permission = {k: ["Get"] for k in ("Token", "Project", "Event", "Version", "All", "CPU")}
    parse_document(doc("Role", "r", {"permission": permission}))
    assert issues(doc("Role", "r", {"permission": {"Workload": ["Aply", "Get", "Dleete"]}})) == [
        'spec.permission.Workload[0]: unknown verb "Aply"; valid verbs (any case): '
        "Apply, Delete, Get, GetOne, Describe, Event, Version, Pause, Resume, Shell, Token, Log, "
        "Use, Upload, Download, Ls, Sync, Clone, Credits, Report, Create, Revoke, List",
        'spec.permission.Workload[2]: unknown verb "Dleete"; valid verbs (any case): '
        "Apply, Delete, Get, GetOne, Describe, Event, Version, Pause, Resume, Shell, Token, Log, "
        "Use, Upload, Download, Ls, Sync, Clone, Credits, Report, Create, Revoke, List",
    ]


def test_user_resources_match_with_all_wildcards_and_credits_by_zone() -> None:
    user = parse_document(
        doc(
            "User",
            "amedeo.setti",
            {
                "resources": [{"kind": "All", "zone": "z1", "workspace": "All", "role": "user"}],
                "credits": [{"zone": "z1", "weekly": 500}, {"zone": "z2", "weekly": 12.5}],
            },
        )
    ).spec_as(UserSpec)
    entry = user.resources[0]
    assert entry.matches("Workload", "z1", "anything")
    assert not entry.matches("Workload", "z2", "anything")
    assert user.weekly_credits("z1") == 500
    assert isinstance(user.weekly_credits("z1"), int)
    assert user.weekly_credits("z2") == 12.5
    assert user.weekly_credits("z3") is None
    assert user.default.workspace is None


def test_user_credit_zone_listed_twice_is_an_error() -> None:
    credits = [{"zone": "z1", "weekly": 1}, {"zone": "z1", "weekly": 2}]
    assert issues(doc("User", "u", {"credits": credits})) == [
        "spec.credits: zone 'z1' has two weekly budgets"
    ]


# --- infrastructure kinds -----------------------------------------------------------


def test_storage_defaults_to_nfs_and_local_needs_no_endpoint() -> None:
    nfs = parse_document(
        doc("Storage", "s", {"endpoint": "nas.local", "mountpath": "/export"}, zone="z")
    )
    assert nfs.spec_as(StorageSpec).kind == "NFS"
    local = parse_document(doc("Storage", "l", {"kind": "local", "mountpath": "/srv/dora"}))
    assert local.spec_as(StorageSpec).kind == "Local"
    assert issues(doc("Storage", "l", {"kind": "Local", "endpoint": "nas", "mountpath": "/x"})) == [
        "spec.endpoint: Local storage has no endpoint: it is a directory on every node"
    ]


def test_volume_defaults_and_local_storage() -> None:
    vol = parse_document(doc("Volume", "home", {"storage": "Local", "localPath": "/data/home"}))
    spec = vol.spec_as(VolumeSpec)
    assert (spec.storage, spec.policy, spec.localPath) == ("Local", "rw", "/data/home")
    assert issues(doc("Volume", "home", {})) == ["spec.storage: required field is missing"]


def test_node_allows_both_workload_types_by_default() -> None:
    node = parse_document(doc("Node", "n1", {"endpoint": "https://127.0.0.41:3001"})).spec_as(
        NodeSpec
    )
    assert node.allow == ["CPUWorkload", "GPUWorkload"]
    assert node.allows_gpu() and node.allows_cpu()
    assert node.schedulingDisabled is False
    assert issues(doc("Node", "n1", {"endpoint": "https://h:3001", "token": "secret"}))[
        0
    ].startswith("spec.token: unknown field 'token'")


def test_zone_and_workspace_specs() -> None:
    zone = parse_document(doc("Zone", "z1", {"endpoint": "https://api.example.org"}))
    assert zone.spec_as(ZoneSpec).endpoint == "https://api.example.org"
    ws = parse_document(doc("Workspace", "amedeo.setti"))
    assert isinstance(ws.spec, WorkspaceSpec)
    assert ws.to_document()["spec"] == {}


def test_resourcecredit_name_is_the_product_name() -> None:
    r = parse_document(
        doc("Resourcecredit", "NVIDIA A100-SXM4-80GB", {"credit": {"per": {"hour": 3}}})
    )
    spec = r.spec_as(ResourcecreditSpec)
    assert spec.product_name == "NVIDIA A100-SXM4-80GB"  # filled from the name
    assert spec.annotations == {}
    assert issues(doc("Resourcecredit", " A100", {"credit": {"per": {"hour": 1}}}))[0].startswith(
        "metadata.name: must be a GPU product name"
    )


def test_usercredit_spec_is_empty() -> None:
    r = parse_document(doc("Usercredit", "alice", zone="z1"))
    assert r.spec_dict() == {}


# --- envelope -----------------------------------------------------------------------


def test_zoned_and_workspaced_metadata_is_optional() -> None:
    r = parse_document(doc("Workload", "a", {"image": {"image": "x"}}))
    assert (r.zone, r.workspace) == (None, None)


def test_equal_group_and_workspace_are_accepted() -> None:
    r = parse_document(doc("Volume", "v", {"storage": "s"}, group="team", workspace="team"))
    assert r.workspace == "team"


def test_wildcard_is_not_a_zone_or_workspace_name() -> None:
    assert issues(doc("Volume", "v", {"storage": "s"}, zone="All")) == [
        "metadata.zone: All is a wildcard, not a zone name"
    ]


def test_meta_is_stored_as_is_and_round_trips() -> None:
    meta = {
        "integrations": {"github": {"webhooks": [{"path": "p", "active": True}]}},
        "shell": "/bin/bash",
    }
    d = doc("Workload", "a", {"image": {"image": "x"}})
    d["meta"] = meta
    r = parse_document(d)
    assert r.meta == meta
    assert r.to_document()["meta"] == meta


def test_issue_formatting_index_source_and_dict() -> None:
    with pytest.raises(DocumentError) as exc:
        parse_document(
            doc("Workload", "a", {"image": {"image": "x"}, "replica": {"count": "two"}}),
            1,
            "job.yaml",
        )
    [issue] = exc.value.issues
    assert str(issue) == (
        'job.yaml doc 2: spec.replica.count: must be an integer between 0 and 10000 (got "two")'
    )
    assert issue.as_dict() == {
        "doc": 2,
        "source": "job.yaml",
        "path": "spec.replica.count",
        "message": 'must be an integer between 0 and 10000 (got "two")',
    }
    assert str(Issue(1, None, "", "invalid YAML")) == "doc 1: invalid YAML"
    assert str(exc.value) == str(issue)


def test_json_floats_cannot_fill_string_fields_but_ints_can() -> None:
    # A JSON parser has already turned 1.10 into 1.1: refuse rather than store "1.1".
    assert issues(doc("Workload", "a", {"image": {"image": 1.1}})) == [
        "spec.image.image: must be a string (got 1.1); quote it to keep the exact text"
    ]
    assert parse_document(doc("Workload", "2024", {"image": {"image": "x"}})).name == "2024"
    assert issues(doc("Workload", True, {"image": {"image": "x"}})) == [
        "metadata.name: must be a string (got true); quote it to mean the text"
    ]


def test_check_objects_splits_good_and_bad_documents_of_a_json_body() -> None:
    body = [doc("Zone", "z1"), doc("Zone", "z 2"), doc("Workspace", "w")]
    results = check_objects(body, "api")
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].index == 2
    assert str(results[1].issues[0]).startswith("api doc 2: metadata.name: must be a name")
    assert [r.name for r in load_objects(doc("Zone", "z1"))] == ["z1"]


# --- Resource constructed in code -----------------------------------------------------


def test_resource_can_be_built_in_code_and_is_checked() -> None:
    built = Resource.model_validate(
        {"kind": "Workload", "name": "a", "zone": "z", "spec": {"image": {"image": "busybox"}}}
    )
    assert isinstance(built.spec, WorkloadSpec)
    assert built == parse_document(built.to_document())
    with pytest.raises(ValidationError, match="Zone is a global kind"):
        Resource(kind="Zone", name="z", zone="z", spec=ZoneSpec())
    assert isinstance(Resource(kind="Zone", name="z").spec, ZoneSpec)  # default from the kind
    with pytest.raises(ValidationError, match="must be a ZoneSpec"):
        Resource(kind="Zone", name="z", spec=WorkspaceSpec())
    with pytest.raises(ValidationError, match="read-only view"):
        Resource(kind="GPU", name="g")
    with pytest.raises(TypeError):
        built.spec_as(NodeSpec)
    with pytest.raises(ValidationError, match="workspace: All is a wildcard"):
        Resource(kind="Volume", name="v", workspace="All", spec=VolumeSpec(storage="s"))
    with pytest.raises(ValidationError, match="zone: must be a name"):
        Resource(kind="Node", name="n", zone="a b", spec=NodeSpec(endpoint="https://h:1"))
